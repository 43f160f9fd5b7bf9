"""Ablation verdicts: a change paired on the same figures with a slide-bootstrap interval, and a change paired by
seed set against the baseline's spread over seeds."""

from __future__ import annotations

import numpy as np
import pytest

from mitotype.evaluation.comparisons import (
    ComparisonError,
    Verdict,
    domain_seed_sd,
    noise_floor,
    paired_bootstrap_delta,
    seed_paired_table,
)
from mitotype.evaluation.predictions import Prediction, PredictionTable


def tables(flip: float, seed: int = 0) -> tuple[PredictionTable, PredictionTable]:
    """A baseline 90 % right and a variant that flips a share ``flip`` of its decisions."""
    rng = np.random.default_rng(seed)
    base, other = [], []
    for i in range(200):
        label = int(i % 4 == 0)
        right = rng.random() < 0.9
        p = 0.8 if (label == 1) == right else 0.2
        base.append(Prediction(uid=str(i), dataset="d", group=str(i // 5), label=label, p_atypical=p, threshold=0.5))
        flipped = 1.0 - p if rng.random() < flip else p
        other.append(Prediction(uid=str(i), dataset="d", group=str(i // 5), label=label, p_atypical=flipped,
                                threshold=0.5))
    return PredictionTable(base), PredictionTable(other)


def test_a_worse_variant_has_a_negative_change_and_interval() -> None:
    base, other = tables(flip=0.5)
    delta = paired_bootstrap_delta(base, other, n=200)
    assert delta.delta < 0 and delta.ci_high < 0 and delta.ci_low <= delta.delta <= delta.ci_high
    assert paired_bootstrap_delta(base, base, n=50).as_dict() == {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_figures_pair_by_dataset_and_id_and_unpaired_ones_are_left_out() -> None:
    base, other = tables(flip=0.0)
    renamed = PredictionTable(Prediction(**{**vars(r), "dataset": "e"}) for r in other)  # another dataset's figures
    assert len({r.key for r in base} & {r.key for r in renamed}) == 0
    half = PredictionTable(other.rows[:100])
    assert paired_bootstrap_delta(base, half, n=20).delta == pytest.approx(0.0)  # the same decisions where paired


def test_the_noise_floor_is_the_larger_spread() -> None:
    assert noise_floor(0.01, 0.02) == 0.02 and noise_floor(0.03) == 0.03 and noise_floor(None, None) is None
    assert domain_seed_sd([{"A": 0.70, "B": 0.8}, {"A": 0.74, "B": 0.8}]) == pytest.approx(0.01414, abs=1e-4)
    assert domain_seed_sd([{"A": 0.7}]) is None
    assert Verdict((0.02, 0.01), 0.01).beats_spread is True
    assert Verdict((0.02, -0.01), 0.01).beats_spread is False  # mean 0.005
    assert Verdict((0.5,), None).beats_spread is None


def run(name: str, seed: int, pooled: float, a: float, b: float) -> dict:
    return {"result": name, "seed": seed, "pooled_ba": pooled, "per_domain_ba": {"A": a, "B": b}}


def test_variants_pair_by_seed_against_the_baseline_spread() -> None:
    baseline = [run("b0", 0, 0.750, 0.70, 0.80), run("b1", 1, 0.751, 0.74, 0.80)]
    table = seed_paired_table(baseline, {"big": [run("v1", 1, 0.851, 0.84, 0.9)],
                                         "small": [run("s0", 0, 0.755, 0.7, 0.81), run("s1", 1, 0.756, 0.74, 0.8)]},
                              metrics=["pooled_ba"], balanced_accuracies=["pooled_ba"])
    assert table["baseline"]["noise"]["pooled_ba"] == pytest.approx(0.01414, abs=1e-4)  # the per-domain sd wins
    assert table["big"]["seeds"] == [1] and table["big"]["pooled_ba"]["change"] == pytest.approx(0.10)
    assert table["big"]["pooled_ba"]["beats_spread"] is True
    assert table["small"]["pooled_ba"]["change_per_seed"] == pytest.approx([0.005, 0.005])
    assert table["small"]["pooled_ba"]["beats_spread"] is False
    with pytest.raises(ComparisonError, match="no baseline run with the seed"):
        seed_paired_table(baseline, {"x": [run("x3", 3, 0.7, 0.7, 0.7)]}, metrics=["pooled_ba"])
    with pytest.raises(ComparisonError, match="held-out domains A, C"):
        other = {**run("x0", 0, 0.7, 0.7, 0.7), "per_domain_ba": {"A": 0.7, "C": 0.7}}
        seed_paired_table(baseline, {"x": [other]}, metrics=["pooled_ba"])
