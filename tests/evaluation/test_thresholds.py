"""Thresholds for unseen domains: each rule recovers what it is built to recover on constructed scores."""

from __future__ import annotations

import numpy as np
import pytest

from mitotype.evaluation.metrics import best_threshold
from mitotype.evaluation.thresholds import (
    apply_platt,
    apply_temperature,
    estimate_prior,
    fit_platt,
    fit_temperature,
    nested_thresholds,
    platt_threshold,
    rate_matched_threshold,
    robust_threshold,
)


def _scores(rng: np.random.Generator, n: int, prior: float, shift: float = 0.0, scale: float = 1.0):
    """Labels and p = sigmoid(scale * (logit-normal margin + shift)): a calibrated model when scale=1, shift=0."""
    y = (rng.random(n) < prior).astype(int)
    # class-conditional logits N(+-1, 1) give the Bayes posterior logit 2z + log(prior / (1 - prior))
    z = rng.normal(np.where(y == 1, 1.0, -1.0), 1.0)
    logit = 2.0 * z + np.log(prior / (1 - prior))
    return y, 1.0 / (1.0 + np.exp(-(scale * logit + shift)))


def test_fit_temperature_undoes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    y, p = _scores(rng, 20000, 0.3, scale=3.0)  # logits three times too large
    t = fit_temperature(y, p)
    assert t == pytest.approx(3.0, rel=0.08)
    q = apply_temperature(p, t)
    assert np.all(np.diff(q[np.argsort(p)]) >= 0)  # monotone: rankings unchanged


def test_estimate_prior_follows_a_prevalence_change() -> None:
    rng = np.random.default_rng(1)
    # a calibrated source model at prior 0.2 scores a target whose prevalence is 0.4
    y, _ = _scores(rng, 20000, 0.4)
    z = rng.normal(np.where(y == 1, 1.0, -1.0), 1.0)
    p_source = 1.0 / (1.0 + np.exp(-(2.0 * z + np.log(0.2 / 0.8))))
    assert estimate_prior(p_source, 0.2) == pytest.approx(0.4, abs=0.03)
    assert estimate_prior(p_source, 0.2) != pytest.approx(float(np.mean(p_source)), abs=0.03)  # not the naive mean


def test_robust_threshold_protects_the_worst_domain() -> None:
    rng = np.random.default_rng(2)
    y1, p1 = _scores(rng, 3000, 0.2)
    y2, p2 = _scores(rng, 600, 0.2, shift=-2.0)  # a small domain whose scores all run low
    y, p = np.concatenate([y1, y2]), np.concatenate([p1, p2])
    dom = np.array(["big"] * len(y1) + ["low"] * len(y2))
    pooled, robust = best_threshold(y, p), robust_threshold(y, p, dom)

    def ba(yy, pp, t):
        return ((pp[yy == 1] >= t).mean() + (pp[yy == 0] < t).mean()) / 2

    assert robust < pooled
    assert min(ba(y1, p1, robust), ba(y2, p2, robust)) > min(ba(y1, p1, pooled), ba(y2, p2, pooled))


def test_robust_threshold_falls_back_with_one_domain() -> None:
    rng = np.random.default_rng(3)
    y, p = _scores(rng, 500, 0.3)
    assert robust_threshold(y, p, ["a"] * len(y)) == best_threshold(y, p)


def test_rate_matched_threshold_follows_a_shifted_target() -> None:
    rng = np.random.default_rng(4)
    y_val, p_val = _scores(rng, 3000, 0.2)
    t_val = best_threshold(y_val, p_val)
    y_t, p_t = _scores(rng, 3000, 0.2, shift=-1.5)  # a new scanner: every score lower

    def sens(t):
        return (p_t[y_t == 1] >= t).mean()

    t_rate, prior = rate_matched_threshold(y_val, p_val, t_val, p_t)
    assert t_rate < t_val and prior == pytest.approx(y_val.mean())
    assert sens(t_rate) > sens(t_val) + 0.15
    assert abs(sens(t_rate) - (p_val[y_val == 1] >= t_val).mean()) < 0.05  # the validation sensitivity, recovered
    # EM reads part of the shift as fewer atypical figures: it moves the threshold, but less far
    t_em, prior_em = rate_matched_threshold(y_val, p_val, t_val, p_t, prior="em")
    assert prior_em < y_val.mean() and t_rate < t_em < t_val
    # with no shift the rule stays near the validation threshold
    _, p_same = _scores(rng, 3000, 0.2)
    t_same, _ = rate_matched_threshold(y_val, p_val, t_val, p_same)
    assert abs((p_same >= t_same).mean() - (p_same >= t_val).mean()) < 0.03


def test_rate_matched_threshold_em_follows_a_prevalence_change() -> None:
    rng = np.random.default_rng(5)
    y_val, p_val = _scores(rng, 4000, 0.2)
    t_val = best_threshold(y_val, p_val)
    y_t = (rng.random(4000) < 0.45).astype(int)  # same scanner, many more atypical figures
    z = rng.normal(np.where(y_t == 1, 1.0, -1.0), 1.0)
    p_t = 1.0 / (1.0 + np.exp(-(2.0 * z + np.log(0.2 / 0.8))))
    t_em, prior_em = rate_matched_threshold(y_val, p_val, t_val, p_t, prior="em")
    assert prior_em == pytest.approx(0.45, abs=0.04)
    assert abs(t_em - t_val) < abs(rate_matched_threshold(y_val, p_val, t_val, p_t)[0] - t_val)


def test_rate_matched_threshold_rejects_an_unknown_prior() -> None:
    with pytest.raises(ValueError, match="prior"):
        rate_matched_threshold([0, 1], [0.1, 0.9], 0.5, [0.2], prior="guess")


def test_fit_platt_undoes_scale_and_bias() -> None:
    rng = np.random.default_rng(4)
    y, p = _scores(rng, 20000, 0.2, shift=3.0, scale=2.0)  # overconfident and pushed toward atypical
    slope, intercept = fit_platt(y, p)
    assert slope == pytest.approx(0.5, rel=0.08)
    assert intercept == pytest.approx(-1.5, abs=0.15)
    q = apply_platt(p, slope, intercept)
    assert abs(float(q.mean()) - float(y.mean())) < 0.01  # calibrated at the true prevalence
    assert abs(float(p.mean()) - float(y.mean())) > 0.1


def test_platt_threshold_finds_the_balanced_optimum_where_a_temperature_cannot() -> None:
    rng = np.random.default_rng(5)
    prior, shift, scale = 0.2, 3.0, 2.0
    y, p = _scores(rng, 20000, prior, shift=shift, scale=scale)
    # balanced-accuracy optimum: likelihood ratio 1, i.e. Bayes logit log(prior / (1 - prior)), z = 0
    optimum = 1.0 / (1.0 + np.exp(-(scale * np.log(prior / (1 - prior)) + shift)))
    platt = platt_threshold(y, p)
    temperature_cut = float(apply_temperature(float(np.mean(y)), 1.0 / fit_temperature(y, p)))

    def ba(t):
        return ((p[y == 1] >= t).mean() + (p[y == 0] < t).mean()) / 2

    assert platt == pytest.approx(optimum, abs=0.03)
    assert ba(platt) > ba(temperature_cut) + 0.05  # the temperature keeps the bias
    assert ba(platt) > ba(best_threshold(y, p)) - 0.005


def test_platt_threshold_guards() -> None:
    with pytest.raises(ValueError, match="both classes"):
        fit_platt([0, 0, 0], [0.1, 0.2, 0.3])
    y = np.array([0, 0, 0, 1, 1, 1] * 20)
    p = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1] * 20)  # anti-correlated: no increasing fit
    assert platt_threshold(y, p) == best_threshold(y, p)


def _logit(t: float) -> float:
    return float(np.log(t) - np.log1p(-t))


def _balanced_accuracy(y: np.ndarray, p: np.ndarray, t: float) -> float:
    return float((np.mean(p[y == 1] >= t) + np.mean(p[y == 0] < t)) / 2)


def test_nested_thresholds_carry_the_drift_of_an_unseen_domain() -> None:
    """Every unseen domain scores 1.5 logits lower than the validation slides: each nested rule moves the
    threshold down by about that much, and on a new domain with the same drift beats the validation one."""
    rng = np.random.default_rng(3)
    inner = []
    for _ in range(3):
        y_val, p_val = _scores(rng, 3000, 0.2)
        y_ood, p_ood = _scores(rng, 3000, 0.2, shift=-1.5)
        inner.append((y_ood, p_ood, best_threshold(y_val, p_val)))
    y_val, p_val = _scores(rng, 3000, 0.2)
    y_new, p_new = _scores(rng, 3000, 0.2, shift=-1.5)
    t_val = best_threshold(y_val, p_val)
    rules = nested_thresholds(inner, t_val, domains=["a", "b", "c"])
    assert set(rules) == {"nested-pooled", "nested-robust", "nested-shift"}
    for name, t in rules.items():
        assert _logit(t) - _logit(t_val) == pytest.approx(-1.5, abs=0.5), name
        assert _balanced_accuracy(y_new, p_new, t) > _balanced_accuracy(y_new, p_new, t_val) + 0.03, name


def test_nested_shift_keeps_the_outer_scale() -> None:
    """Inner models on another score scale (all 2 logits higher) but with no drift: ``nested-shift`` keeps the
    outer validation threshold, while pooling the inner scores takes their scale with it."""
    rng = np.random.default_rng(4)
    inner = []
    for _ in range(3):
        y_val, p_val = _scores(rng, 3000, 0.2, shift=2.0)
        y_ood, p_ood = _scores(rng, 3000, 0.2, shift=2.0)
        inner.append((y_ood, p_ood, best_threshold(y_val, p_val)))
    rules = nested_thresholds(inner, 0.3)
    assert rules["nested-shift"] == pytest.approx(0.3, abs=0.08)
    assert _logit(rules["nested-pooled"]) - _logit(0.3) > 1.0


def test_nested_thresholds_guards() -> None:
    with pytest.raises(ValueError, match="at least one inner fold"):
        nested_thresholds([], 0.5)
    with pytest.raises(ValueError, match="2 domain names for 1 inner folds"):
        nested_thresholds([(np.array([0, 1]), np.array([0.2, 0.8]), 0.5)], 0.5, domains=["a", "b"])
