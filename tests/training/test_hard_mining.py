"""Hard-example mining: difficulty from confident mistakes, smoothed over rounds, fed to the sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mitotype.errors import ConfigError
from mitotype.training.sampler import SamplingSettings, domain_aware_weights
from mitotype.training.strategies.hard_mining import HardExampleMiner, HardMiningSettings, round_difficulty


def test_round_difficulty_values() -> None:
    probs = np.array([0.95, 0.1, 0.05, 0.97, 0.5, 0.6, 0.67])
    labels = np.array([0, 1, 0, 1, 1, 0, 1])
    # margin 0.25: right by >= 0.25 -> 0, wrong by >= 0.25 -> 1, linear in between
    got = round_difficulty(probs, labels, None, margin=0.25)
    np.testing.assert_allclose(got, [1.0, 1.0, 0.0, 0.0, 0.5, 0.7, 0.16])
    # with soft labels a 2-of-3 atypical figure scored 0.67 is right
    soft = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 2 / 3])
    assert round_difficulty(probs, labels, soft, margin=0.25)[-1] == 0.0


def test_weights_rise_for_mistakes_and_fall_once_right() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    domains = np.array(["a"] * 8)
    miner = HardExampleMiner(HardMiningSettings(margin=0.25, momentum=0.5), n=8)
    sampling = SamplingSettings(class_balance=1.0, domain_power=0.0, hard_weight=3.0)
    right = np.array([0.05, 0.05, 0.05, 0.05, 0.95, 0.95, 0.95, 0.95])
    wrong = right.copy()
    wrong[0] = 0.95  # a normal called atypical with confidence (hard negative)
    wrong[4] = 0.05  # a missed atypical

    base = domain_aware_weights(labels, domains, miner.difficulty, sampling)
    history = [base]
    diffs = [miner.update(wrong, labels)]
    history.append(domain_aware_weights(labels, domains, diffs[-1], sampling))
    for _ in range(3):
        diffs.append(miner.update(right, labels))
        history.append(domain_aware_weights(labels, domains, diffs[-1], sampling))

    assert diffs[0][0] == 1.0 and diffs[0][4] == 1.0 and diffs[0][1] == 0.0
    assert [d[0] for d in diffs] == [1.0, 0.5, 0.25, 0.125]  # EMA decay once the figure is right
    w0 = [h[0] for h in history]
    w4 = [h[4] for h in history]
    assert w0[1] > w0[0] and w4[1] > w4[0]  # rise while misclassified
    assert w0[1] > w0[2] > w0[3] > w0[4] > w0[0]  # fall back toward the easy weight once right
    assert w4[1] > w4[2] > w4[3] > w4[4] > w4[0]
    assert history[1][0] / history[1][1] == pytest.approx(4.0)  # (1 + weight)x an easy cell-mate
    assert miner.rounds == 4


def test_partial_update_keeps_other_figures() -> None:
    miner = HardExampleMiner(HardMiningSettings(momentum=0.0), n=5)
    miner.update(np.full(5, 0.9), np.zeros(5))
    out = miner.update(torch.tensor([0.0, 0.0]), torch.tensor([0, 0]), indices=[1, 3])
    np.testing.assert_allclose(out, [1.0, 0.0, 1.0, 0.0, 1.0])
    with pytest.raises(ValueError):
        miner.update([0.1, 0.2], [0, 0], indices=[1, 1])
    with pytest.raises(ValueError):
        miner.update(np.full(4, 0.5), np.zeros(4))
    with pytest.raises(ValueError):
        miner.update(np.full(5, 1.5), np.zeros(5))


def test_disabled_miner_stays_at_zero_and_due_schedule() -> None:
    off = HardExampleMiner(HardMiningSettings(enabled=False), n=3)
    np.testing.assert_array_equal(off.update([1.0, 1.0, 1.0], [0, 0, 0]), np.zeros(3))
    assert not off.due(0)
    every2 = HardExampleMiner(HardMiningSettings(every_n_epochs=2), n=3)
    assert [e for e in range(6) if every2.due(e)] == [1, 3, 5]


def test_state_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    rounds = [rng.random(50) for _ in range(4)]
    a = HardExampleMiner(HardMiningSettings(momentum=0.7), n=50)
    for p in rounds[:2]:
        a.update(p, labels)
    b = HardExampleMiner(HardMiningSettings(momentum=0.7), n=50)
    b.load_state_dict({k: v.clone() for k, v in a.state_dict().items()})
    for p in rounds[2:]:
        np.testing.assert_array_equal(a.update(p, labels), b.update(p, labels))
    assert a.rounds == b.rounds == 4
    with pytest.raises(ValueError):
        HardExampleMiner(None, n=49).load_state_dict(a.state_dict())


def test_settings_validation() -> None:
    with pytest.raises(ConfigError):
        HardMiningSettings(margin=0.0)
    with pytest.raises(ConfigError):
        HardMiningSettings(every_n_epochs=0)
    with pytest.raises(ConfigError):
        HardMiningSettings(momentum=1.0)
