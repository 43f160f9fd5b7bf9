"""The prevalence-shift yardstick: draws of a set prevalence, and what moves under them."""

from __future__ import annotations

import numpy as np
import pytest

from mitotype.evaluation.prevalence import prevalence_draw, prevalence_draws, summarise_draws, yardstick


def _domain(n_neg: int = 400, n_pos: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_neg, int), np.ones(n_pos, int)]
    p = np.clip(0.3 + 0.35 * y + 0.2 * rng.standard_normal(len(y)), 0, 1)
    return y, p


@pytest.mark.parametrize("prevalence", [0.05, 0.1, 0.2, 0.5])
def test_a_draw_has_the_prevalence_asked_for_and_keeps_the_scarce_class(prevalence: float) -> None:
    y, _ = _domain()
    rows = prevalence_draw(y, prevalence, np.random.default_rng(1))
    assert np.all(np.diff(rows) > 0)  # sorted, no repeats: a real subset
    assert y[rows].mean() == pytest.approx(prevalence, abs=0.005)
    if prevalence < 0.2:  # fewer atypical figures: every normal one kept
        assert set(np.flatnonzero(y == 0)) <= set(rows)
    if prevalence > 0.2:  # more atypical: every atypical one kept
        assert set(np.flatnonzero(y == 1)) <= set(rows)


def test_draws_are_seeded_and_differ_from_each_other() -> None:
    y, _ = _domain()
    a = prevalence_draws(y, 0.05, 4, seed=3)
    b = prevalence_draws(y, 0.05, 4, seed=3)
    assert all(np.array_equal(x, z) for x, z in zip(a, b))
    assert not np.array_equal(a[0], a[1])
    assert len(prevalence_draws(y, None, 5)) == 1  # the domain as it is has nothing to draw
    with pytest.raises(ValueError, match="both classes"):
        prevalence_draw(np.zeros(5, int), 0.1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="strictly between"):
        prevalence_draw(y, 1.0, np.random.default_rng(0))


def test_a_fixed_score_keeps_its_balanced_accuracy_and_an_adaptive_one_does_not() -> None:
    """Under a pure prevalence shift a fixed threshold keeps sensitivity and specificity (noise only), while a
    rule that reads the input (here: call the top 20 % atypical) moves with the prevalence."""
    y, p = _domain(4000, 1000)
    fixed = yardstick(y, [None, 0.05], 5, lambda rows: (p[rows], 0.475))
    quantile = yardstick(y, [None, 0.05], 5, lambda rows: (p[rows], float(np.quantile(p[rows], 0.8))))
    assert fixed["0.05"]["balanced_accuracy"] == pytest.approx(fixed["natural"]["balanced_accuracy"], abs=0.03)
    assert abs(quantile["0.05"]["balanced_accuracy"] - quantile["natural"]["balanced_accuracy"]) > 0.02
    assert fixed["0.05"]["prevalence"] == pytest.approx(0.05, abs=0.002)
    assert fixed["natural"]["draws"] == 1 and fixed["0.05"]["draws"] == 5
    assert fixed["0.05"]["balanced_accuracy_sd"] > 0
    assert len(fixed["0.05"]["per_draw"]) == 5


def test_calibration_error_grows_when_the_prevalence_falls() -> None:
    """Scores calibrated at 20 % atypical overstate p(atypical) at 5 %: the yardstick's ECE shows it."""
    rng = np.random.default_rng(0)
    y = (rng.random(20000) < 0.2).astype(int)
    z = rng.standard_normal(len(y)) + 2.0 * y  # a likelihood ratio the prevalence does not change
    p = 1 / (1 + np.exp(-(2.0 * z - 2.0 - np.log(4.0))))  # the exact posterior at 20 %
    res = yardstick(y, [None, 0.05], 3, lambda rows: (p[rows], 0.2))
    assert res["natural"]["ece"] < 0.02
    assert res["0.05"]["ece"] > 0.05


def test_summary_of_one_draw_has_no_spread() -> None:
    s = summarise_draws([{"balanced_accuracy": 0.8, "sensitivity": 0.7, "specificity": 0.9, "roc_auc": None,
                          "ece": 0.1}])
    assert s["balanced_accuracy"] == 0.8 and s["balanced_accuracy_sd"] is None and s["roc_auc"] is None
