"""Domain-aware, class-balanced, hardness-weighted sampling and its DDP sharding."""

from __future__ import annotations

import numpy as np
import pytest

from mitotype.errors import ConfigError
from mitotype.training.sampler import (
    DistributedEpochSampler,
    EpochSampler,
    SamplingSettings,
    domain_aware_weights,
    sampling_targets,
)

# domain: (normal, atypical) counts; domain D has no atypical figure at all
COUNTS = {"A": (500, 100), "B": (240, 60), "C": (70, 30), "D": (50, 0)}
DRAWS = 200_000
TOL = 0.01  # absolute; the binomial standard error at 200k draws is <= 0.0012


def _dataset() -> tuple[np.ndarray, np.ndarray]:
    labels, domains = [], []
    for name, (neg, pos) in COUNTS.items():
        labels += [0] * neg + [1] * pos
        domains += [name] * (neg + pos)
    order = np.random.default_rng(0).permutation(len(labels))  # not grouped, as real data is not
    return np.array(labels)[order], np.array(domains)[order]


def _frequencies(draw: np.ndarray, labels: np.ndarray, domains: np.ndarray) -> tuple[dict, float]:
    dom = {name: float(np.mean(domains[draw] == name)) for name in COUNTS}
    return dom, float(np.mean(labels[draw] == 1))


def test_full_balance_every_domain_equal_and_classes_balanced_within() -> None:
    labels, domains = _dataset()
    settings = SamplingSettings(class_balance=1.0, domain_power=1.0, hard_weight=0.0)
    sampler = EpochSampler(domain_aware_weights(labels, domains, None, settings), num_samples=DRAWS, seed=1)
    draw = np.fromiter(iter(sampler), dtype=np.int64)
    dom, atypical = _frequencies(draw, labels, domains)
    for name in COUNTS:
        assert dom[name] == pytest.approx(0.25, abs=TOL)
    # three domains split 50/50, D is all normal: P(atypical) = 3 * 0.25 * 0.5
    assert atypical == pytest.approx(0.375, abs=TOL)
    in_a = domains[draw] == "A"
    assert np.mean(labels[draw][in_a] == 1) == pytest.approx(0.5, abs=2 * TOL)


def test_partial_balance_matches_analytic_targets() -> None:
    labels, domains = _dataset()
    settings = SamplingSettings(class_balance=0.5, domain_power=0.5, hard_weight=0.0)
    # by hand: domain mass ~ sqrt(size); class share = 0.5 * natural + 0.5 / (classes present)
    sizes = {k: sum(v) for k, v in COUNTS.items()}
    root = {k: np.sqrt(n) for k, n in sizes.items()}
    dom_expected = {k: root[k] / sum(root.values()) for k in COUNTS}
    share_pos = {k: 0.5 * COUNTS[k][1] / sizes[k] + (0.25 if COUNTS[k][1] else 0.0) for k in COUNTS}
    pos_expected = sum(dom_expected[k] * share_pos[k] for k in COUNTS)

    targets = sampling_targets(labels, domains, settings)
    for k in COUNTS:
        assert targets.domain[k] == pytest.approx(dom_expected[k], rel=1e-12)
    assert targets.label[1] == pytest.approx(pos_expected, rel=1e-12)
    assert targets.cell[("D", 0)] == pytest.approx(dom_expected["D"], rel=1e-12)
    assert ("D", 1) not in targets.cell

    weights = domain_aware_weights(labels, domains, None, settings)
    assert weights.sum() == pytest.approx(1.0)
    draw = EpochSampler(weights, num_samples=DRAWS, seed=2).global_indices()
    dom, atypical = _frequencies(draw, labels, domains)
    for k in COUNTS:
        assert dom[k] == pytest.approx(dom_expected[k], abs=TOL)
    assert atypical == pytest.approx(pos_expected, abs=TOL)


def test_neutral_settings_and_disabled_give_uniform_weights() -> None:
    labels, domains = _dataset()
    n = labels.size
    neutral_settings = SamplingSettings(class_balance=0.0, domain_power=0.0, hard_weight=0.0)
    neutral = domain_aware_weights(labels, domains, None, neutral_settings)
    np.testing.assert_allclose(neutral, np.full(n, 1 / n), rtol=1e-12)
    difficulty = np.linspace(0, 1, n)
    off = domain_aware_weights(labels, domains, None, SamplingSettings(enabled=False, hard_weight=3.0))
    np.testing.assert_allclose(off, np.full(n, 1 / n), rtol=1e-12)
    # Off keeps the natural mix, but hard mining still up-weights hard figures (1 + 3 * difficulty).
    off_hard = domain_aware_weights(labels, domains, difficulty, SamplingSettings(enabled=False, hard_weight=3.0))
    np.testing.assert_allclose(off_hard / off_hard[0], 1 + 3 * difficulty, rtol=1e-12)
    assert sampling_targets(labels, domains, SamplingSettings(enabled=False)).domain["A"] == pytest.approx(
        600 / 1050
    )


def test_hard_examples_boosted_within_their_cell_and_masses_kept() -> None:
    labels, domains = _dataset()
    settings = SamplingSettings(class_balance=1.0, domain_power=0.5, hard_weight=3.0)
    easy = domain_aware_weights(labels, domains, None, settings)
    difficulty = np.zeros(labels.size)
    cell = np.flatnonzero((domains == "B") & (labels == 1))
    difficulty[cell[:10]] = 1.0
    difficulty[cell[10:20]] = 0.5
    hard = domain_aware_weights(labels, domains, difficulty, settings)
    # a difficulty-1 figure is drawn 4x as often as an easy one of its cell, a 0.5 one 2.5x
    assert hard[cell[0]] / hard[cell[30]] == pytest.approx(4.0)
    assert hard[cell[10]] / hard[cell[30]] == pytest.approx(2.5)
    assert hard[cell[0]] > easy[cell[0]]
    # domain and class masses are unchanged, so the analytic targets still hold
    for name in COUNTS:
        for label in (0, 1):
            m = (domains == name) & (labels == label)
            assert hard[m].sum() == pytest.approx(easy[m].sum(), rel=1e-12)
    # weights update when difficulty changes, and so does the draw
    sampler = EpochSampler(easy, seed=5)
    before = sampler.global_indices()
    sampler.set_weights(hard)
    after = sampler.global_indices()
    assert not np.array_equal(before, after)
    sampler.set_weights(easy)
    np.testing.assert_array_equal(sampler.global_indices(), before)


def test_epoch_sampler_deterministic_by_seed_and_epoch() -> None:
    w = np.random.default_rng(0).random(500)
    a, b = EpochSampler(w, 300, seed=7), EpochSampler(w, 300, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b) and len(a) == 300
    b.set_epoch(4)
    assert list(a) != list(b)
    assert list(EpochSampler(w, 300, seed=8)) != list(EpochSampler(w, 300, seed=7))
    assert len(EpochSampler(w)) == 500


@pytest.mark.parametrize("num_samples,replicas", [(1000, 3), (999, 3), (10, 4), (7, 1)])
def test_distributed_shards_reassemble_the_single_process_draw(num_samples: int, replicas: int) -> None:
    w = np.random.default_rng(1).random(200)
    single = EpochSampler(w, num_samples, seed=9)
    single.set_epoch(2)
    expected = single.global_indices()
    shards = []
    for rank in range(replicas):
        s = DistributedEpochSampler(w, num_samples, num_replicas=replicas, rank=rank, seed=9)
        s.set_epoch(2)
        shards.append(np.fromiter(iter(s), dtype=np.int64))
        assert len(shards[-1]) == len(s) == -(-num_samples // replicas)
    interleaved = np.stack(shards, axis=1).reshape(-1)
    np.testing.assert_array_equal(interleaved[:num_samples], expected)
    np.testing.assert_array_equal(interleaved[num_samples:], expected[: interleaved.size - num_samples])


def test_validation() -> None:
    with pytest.raises(ConfigError):
        SamplingSettings(class_balance=1.5)
    with pytest.raises(ConfigError):
        SamplingSettings(domain_power=-0.1)
    with pytest.raises(ConfigError):
        SamplingSettings(hard_weight=-1)
    labels, domains = _dataset()
    with pytest.raises(ValueError):
        domain_aware_weights(labels, domains, np.full(labels.size, 2.0))
    with pytest.raises(ValueError):
        domain_aware_weights(labels, domains[:-1])
    with pytest.raises(ValueError):
        DistributedEpochSampler(np.ones(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError):
        EpochSampler(np.zeros(4))
