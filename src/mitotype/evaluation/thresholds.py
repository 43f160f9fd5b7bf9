"""Thresholds meant to hold on a domain the model never saw.

The default threshold maximises balanced accuracy on validation slides of the training domains, so
it is tuned to their score distribution; on a new scanner the atypical figures' scores often fall
and sensitivity with them. The rules here choose a threshold from source data alone (``robust``:
the best worst-domain balanced accuracy over the validation domains; ``calibrated``: temperature
scaling fitted on validation, then a fixed cut; ``platt``: a fitted slope *and* intercept, cut at the
validation prevalence, a smooth stand-in for the empirical best threshold) or adapt it to the unlabelled target figures
(``rate``: the target's own score quantile that reproduces the validation's positive rate, at the
source prevalence or at an EM estimate of the target's, after Saerens et al., 2002). None of them reads
a target label. ``nested`` rules learn the threshold from nested leave-one-domain-out inside the
training domains, at the price of one more training per training domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from mitotype.evaluation.metrics import best_threshold

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def fit_temperature(y_true: Any, p_atypical: Any) -> float:
    """The temperature T minimising the log loss of ``sigmoid(logit(p) / T)`` on labelled figures."""
    y = np.asarray(y_true, dtype=np.float64)
    z = _logit(p_atypical)

    def nll(log_t: float) -> float:
        q = np.clip(1.0 / (1.0 + np.exp(-z / np.exp(log_t))), _EPS, 1.0 - _EPS)
        return float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q)))

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def apply_temperature(p_atypical: Any, temperature: float) -> np.ndarray:
    """Probabilities rescaled by a fitted temperature (monotone: it moves no ranking)."""
    return 1.0 / (1.0 + np.exp(-_logit(p_atypical) / temperature))


def fit_platt(y_true: Any, p_atypical: Any) -> tuple[float, float]:
    """Slope and intercept ``(a, b)`` of ``sigmoid(a * logit(p) + b)`` fitted to labelled figures.

    Unlike a temperature, the intercept can undo a constant bias: class-balanced sampling and the focal
    loss push every score toward atypical, so the raw scores overstate p(atypical) at the true prevalence.
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y_true)
    if len(np.unique(y)) < 2:
        raise ValueError("fit_platt needs figures of both classes")
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(p_atypical).reshape(-1, 1), y)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def apply_platt(p_atypical: Any, slope: float, intercept: float) -> np.ndarray:
    """Probabilities mapped through a fitted Platt curve."""
    return 1.0 / (1.0 + np.exp(-(slope * _logit(p_atypical) + intercept)))


def platt_threshold(y_true: Any, p_atypical: Any, cut: float | None = None) -> float:
    """The raw score whose Platt-calibrated probability equals ``cut`` (default: the validation prevalence).

    At the prevalence the calibrated posterior equals the prior, i.e. a likelihood ratio of one: the
    balanced-accuracy optimum, and one that a pure change of prevalence on the target does not move.
    Falls back to the empirical best threshold when the fit is not increasing in the score.
    """
    y = np.asarray(y_true)
    slope, intercept = fit_platt(y, p_atypical)
    if slope <= 0:
        return best_threshold(y, p_atypical)
    c = float(np.mean(y)) if cut is None else cut
    z = (float(_logit(np.array([c]))[0]) - intercept) / slope
    return float(1.0 / (1.0 + np.exp(-z)))


def estimate_prior(p_atypical: Any, source_prior: float, max_iter: int = 200, tol: float = 1e-6) -> float:
    """The target domain's share of atypical figures, from unlabelled calibrated scores (EM of Saerens et al.).

    Each step re-weights the source posteriors by the ratio of the current and the source prior and takes
    their mean as the next estimate; it converges to the prior under which the scores are self-consistent.
    """
    p = np.clip(np.asarray(p_atypical, dtype=np.float64), _EPS, 1.0 - _EPS)
    if p.size == 0:
        raise ValueError("estimate_prior needs at least one score")
    prior = source_prior
    for _ in range(max_iter):
        pos = prior / source_prior * p
        neg = (1.0 - prior) / (1.0 - source_prior) * (1.0 - p)
        new = float(np.mean(pos / (pos + neg)))
        if abs(new - prior) < tol:
            return new
        prior = new
    return prior


def robust_threshold(y_true: Any, p_atypical: Any, domains: Sequence[str]) -> float:
    """The threshold whose worst balanced accuracy over the given domains is highest.

    One threshold for every validation domain at once, so it cannot sit at the edge of one domain's
    score distribution; domains with a single class are skipped. Falls back to the pooled best threshold
    when fewer than two domains carry both classes.
    """
    y = np.asarray(y_true)
    p = np.asarray(p_atypical, dtype=np.float64)
    dom = np.asarray(domains)
    usable = [d for d in np.unique(dom) if len(np.unique(y[dom == d])) == 2]
    if len(usable) < 2:
        return best_threshold(y, p)
    candidates = np.unique(np.concatenate([[0.0], (np.unique(p)[1:] + np.unique(p)[:-1]) / 2.0, [1.0]]))
    worst = np.full(candidates.shape, np.inf)
    for d in usable:
        yd, pd = y[dom == d], p[dom == d]
        decide = pd[None, :] >= candidates[:, None]
        sens = (decide & (yd == 1)).sum(1) / max(1, (yd == 1).sum())
        spec = (~decide & (yd == 0)).sum(1) / max(1, (yd == 0).sum())
        worst = np.minimum(worst, (sens + spec) / 2.0)
    best = worst.max()
    tied = candidates[np.isclose(worst, best, rtol=0.0, atol=1e-12)]
    return float(tied[np.argmin(np.abs(tied - np.median(tied)))])


def rate_matched_threshold(
    y_val: Any, p_val: Any, val_threshold: float, p_target: Any, prior: str = "source", temperature: float = 1.0
) -> tuple[float, float]:
    """A threshold on the target's scores with the positive rate the validation operating point predicts.

    The validation sensitivity and specificity at ``val_threshold`` and the target prevalence give the
    share of target figures that should be called atypical; the threshold is the target score quantile
    at that share. It follows a shift of the whole score distribution (the usual effect of a new
    scanner), which a fixed threshold cannot. ``prior="source"`` assumes the validation prevalence;
    ``"em"`` estimates it from the temperature-calibrated target scores, which also reads a pure score
    shift as a prevalence change, so it corrects less. Returns the threshold and the prevalence used.
    """
    if prior not in ("source", "em"):
        raise ValueError(f"prior must be 'source' or 'em', got {prior!r}")
    y = np.asarray(y_val)
    p = np.asarray(p_val, dtype=np.float64)
    target = np.asarray(p_target, dtype=np.float64)
    sens = float(np.mean(p[y == 1] >= val_threshold))
    spec = float(np.mean(p[y == 0] < val_threshold))
    share = float(np.mean(y))
    if prior == "em":
        share = estimate_prior(apply_temperature(target, temperature), share)
    rate = float(np.clip(share * sens + (1.0 - share) * (1.0 - spec), 0.0, 1.0))
    if rate <= 0.0:
        return float(np.nextafter(target.max(), np.inf)), share
    return float(np.quantile(target, 1.0 - rate, method="higher")), share


def nested_thresholds(
    inner_folds: Sequence[tuple[Any, Any, float]], val_threshold: float, domains: Sequence[str] | None = None
) -> dict[str, float]:
    """Thresholds learnt from how the training domains behave when *they* are the unseen one.

    ``inner_folds``: one ``(y, p_atypical, inner_validation_threshold)`` per training domain, the scores of
    a model trained (same recipe) on the other training domains and never on this one: nested
    leave-one-domain-out inside the training set. ``val_threshold``: the outer model's own validation
    threshold. ``domains`` names each inner fold (default: its position), for the robust rule.

    - ``nested-pooled``: the best threshold on all inner out-of-domain scores pooled;
    - ``nested-robust``: the best worst-domain threshold over the inner out-of-domain scores;
    - ``nested-shift``: the outer validation threshold moved by the mean shift, in logit space, from each
      inner model's validation threshold to its out-of-domain best one: it carries the *drift* a new
      domain causes, not the inner models' score scale, which may differ from the outer model's.
    """
    if not inner_folds:
        raise ValueError("nested_thresholds needs at least one inner fold")
    names = list(domains) if domains is not None else [str(i) for i in range(len(inner_folds))]
    if len(names) != len(inner_folds):
        raise ValueError(f"{len(names)} domain names for {len(inner_folds)} inner folds")
    ys = [np.asarray(y) for y, _, _ in inner_folds]
    ps = [np.asarray(p, dtype=np.float64) for _, p, _ in inner_folds]
    y, p = np.concatenate(ys), np.concatenate(ps)
    dom = np.concatenate([[name] * len(yi) for name, yi in zip(names, ys)])
    shifts = [float(_logit(np.array([best_threshold(yi, pi)]))[0] - _logit(np.array([t]))[0])
              for yi, pi, (_, _, t) in zip(ys, ps, inner_folds)]
    shifted = float(_logit(np.array([val_threshold]))[0]) + float(np.mean(shifts))
    return {
        "nested-pooled": best_threshold(y, p),
        "nested-robust": robust_threshold(y, p, dom),
        "nested-shift": float(1.0 / (1.0 + np.exp(-shifted))),
    }


THRESHOLD_RULES = ("validation", "robust", "calibrated-prior", "calibrated-0.5", "platt", "rate", "rate-em")
"""The rules :mod:`benchmarks/lodo_transfer.py` compares on every held-out domain."""


__all__ = [
    "THRESHOLD_RULES",
    "apply_platt",
    "apply_temperature",
    "estimate_prior",
    "fit_platt",
    "fit_temperature",
    "nested_thresholds",
    "platt_threshold",
    "rate_matched_threshold",
    "robust_threshold",
]
