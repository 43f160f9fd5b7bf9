"""Binary metrics for atypical (label 1, positive) vs normal mitotic figures, built on scikit-learn.

scikit-learn comes with the training extra; the base install (ONNX Runtime inference) computes the same
metrics with :mod:`mitotype.evaluation.numpy_metrics`, held to scikit-learn's results by a test.

Conventions used everywhere in this module:

* ``y_true`` holds 0 (normal) / 1 (atypical); ``p_atypical`` holds p(atypical) in [0, 1].
* A figure is called atypical iff ``p_atypical >= threshold``. ``threshold`` is one number, or one
  per figure (out-of-fold predictions of a cross-validation, where each fold chose its own).
* A metric that is undefined on the given data (sensitivity without atypical figures, ROC AUC with a
  single class, ...) is ``None``, never NaN, so that results can be written as strict JSON.
* Balanced accuracy is (sensitivity + specificity) / 2 and is ``None`` when a class is absent (a mean
  over the classes present would silently turn into plain accuracy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        balanced_accuracy_score,
        brier_score_loss,
        confusion_matrix,
        roc_auc_score,
        roc_curve,
    )
except ImportError:  # the base install: the same definitions in numpy
    from mitotype.evaluation.numpy_metrics import (
        accuracy_score,
        average_precision_score,
        balanced_accuracy_score,
        brier_score_loss,
        confusion_matrix,
        roc_auc_score,
        roc_curve,
    )

__all__ = [
    "BOOTSTRAP_METRICS",
    "ECE_BINS",
    "STD_DDOF",
    "best_threshold",
    "binary_metrics",
    "bootstrap_ci",
    "calibration_bins",
    "classification_metrics",
    "expected_calibration_error",
    "format_mean_std",
    "per_domain_metrics",
]

ECE_BINS = 15
"""Equal-width bins on p(atypical) for the expected calibration error and the reliability diagram."""

STD_DDOF = 1
"""The spread over domains is the *sample* standard deviation (ddof=1), as papers reporting
leave-one-domain-out results as "mean ± std" (e.g. 0.851 ± 0.037) usually compute it."""

BOOTSTRAP_METRICS = (
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "accuracy",
    "roc_auc",
    "pr_auc",
    "brier",
)
"""Metrics :func:`bootstrap_ci` can resample."""

_COUNT_METRICS = ("balanced_accuracy", "sensitivity", "specificity", "accuracy")


# --------------------------------------------------------------------------------------------- inputs
def _labels(y_true: Any, name: str = "y_true") -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {y.shape}")
    if y.size == 0:
        raise ValueError(f"{name} is empty: no figures to evaluate")
    if y.dtype == bool:
        return y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"{name} must hold 0 (normal) / 1 (atypical), got dtype {y.dtype}")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        raise ValueError(
            f"{name} must hold 0 (normal) / 1 (atypical); found {sorted({str(v) for v in y[bad][:5]})} "
            f"at {int(bad.sum())} position(s), first at index {int(np.flatnonzero(bad)[0])}"
        )
    return y.astype(np.int64)


def _probabilities(p: Any, n: int, name: str = "p_atypical") -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values but y_true has {n}")
    finite = np.isfinite(arr)
    if not finite.all():
        idx = np.flatnonzero(~finite)
        raise ValueError(
            f"{name} contains {idx.size} non-finite value(s) (NaN or inf), first at index {int(idx[0])}: "
            "a model or export step produced invalid probabilities"
        )
    outside = (arr < 0.0) | (arr > 1.0)
    if outside.any():
        idx = np.flatnonzero(outside)
        raise ValueError(
            f"{name} must lie in [0, 1] (it is p(atypical), not a logit); {idx.size} value(s) outside, "
            f"first {arr[idx[0]]!r} at index {int(idx[0])}"
        )
    return arr


Threshold = float | Sequence[float] | np.ndarray
"""One decision threshold on p(atypical), or one per figure."""


def _threshold(threshold: Threshold, n: int) -> np.ndarray | float:
    """A float, or an array of ``n`` per-figure thresholds; NaN/inf raise ``ValueError``."""
    t = np.asarray(threshold, dtype=np.float64)
    if t.ndim == 0:
        if not math.isfinite(float(t)):
            raise ValueError(f"threshold must be finite, got {threshold!r}")
        return float(t)
    if t.shape != (n,):
        raise ValueError(f"threshold must be one number or one per figure ({n}), got shape {t.shape}")
    if not np.isfinite(t).all():
        raise ValueError("threshold contains non-finite values (NaN or inf)")
    return t


def _threshold_value(t: np.ndarray | float) -> float | None:
    """The threshold to report: the number, the common value of per-figure thresholds, or ``None``."""
    if isinstance(t, float):
        return t
    return float(t[0]) if t.size and (t == t[0]).all() else None


def _opt(value: float | None) -> float | None:
    """A Python float, or ``None`` for undefined values (NaN)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


# ------------------------------------------------------------------------------------------- metrics
def classification_metrics(y_true: Any, y_pred: Any, scores: Any | None = None) -> dict[str, Any]:
    """Metrics of hard decisions (and the ROC AUC of ``scores`` when given).

    This is the challenge evaluator's view: it knows ``class`` (the decision) and ``confidence`` (the
    score, p(atypical)) per figure, not the threshold. Keys: ``balanced_accuracy``, ``sensitivity``,
    ``specificity``, ``accuracy``, ``roc_auc``, ``n``, ``n_pos``, ``tp``, ``fp``, ``tn``, ``fn``.
    """
    y = _labels(y_true)
    pred = _labels(y_pred, "y_pred")
    if pred.shape != y.shape:
        raise ValueError(f"y_pred has {pred.shape[0]} values but y_true has {y.shape[0]}")
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    both = tp + fn > 0 and tn + fp > 0
    sens = tp / (tp + fn) if tp + fn else None
    spec = tn / (tn + fp) if tn + fp else None
    out: dict[str, Any] = {
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if both else None,
        "sensitivity": sens,
        "specificity": spec,
        "accuracy": float(accuracy_score(y, pred)),
        "roc_auc": None,
        "n": int(y.size),
        "n_pos": int(tp + fn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }
    if scores is not None:
        s = _probabilities(scores, y.size, "scores")
        out["roc_auc"] = float(roc_auc_score(y, s)) if both else None
    return out


def calibration_bins(y_true: Any, p_atypical: Any, n_bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Equal-width bins on p(atypical): ``lo``, ``hi``, ``count``, ``mean_p``, ``frac_pos`` per bin.

    Bin b covers [b/n, (b+1)/n); the last bin is closed so that p = 1 is counted. Empty bins are kept
    (``count`` 0, means NaN) so that callers can plot a fixed grid.
    """
    y = _labels(y_true)
    p = _probabilities(p_atypical, y.size)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    ids = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(ids, minlength=n_bins)
    sum_p = np.bincount(ids, weights=p, minlength=n_bins)
    sum_y = np.bincount(ids, weights=y.astype(np.float64), minlength=n_bins)
    bins = []
    for b in range(n_bins):
        c = int(counts[b])
        bins.append(
            {
                "lo": b / n_bins,
                "hi": (b + 1) / n_bins,
                "count": c,
                "mean_p": float(sum_p[b] / c) if c else float("nan"),
                "frac_pos": float(sum_y[b] / c) if c else float("nan"),
            }
        )
    return bins


def expected_calibration_error(y_true: Any, p_atypical: Any, n_bins: int = ECE_BINS) -> float:
    """ECE of p(atypical): sum over bins of (bin count / n) * |fraction atypical - mean p(atypical)|.

    Calibration is measured on p(atypical) itself (not on the confidence of the predicted class),
    with ``n_bins`` equal-width bins as in :func:`calibration_bins`.
    """
    bins = calibration_bins(y_true, p_atypical, n_bins)
    n = sum(b["count"] for b in bins)
    return float(sum(b["count"] / n * abs(b["frac_pos"] - b["mean_p"]) for b in bins if b["count"]))


def binary_metrics(y_true: Any, p_atypical: Any, threshold: Threshold = 0.5) -> dict[str, Any]:
    """All metrics of p(atypical) at one threshold (or one per figure).

    Keys: ``balanced_accuracy``, ``sensitivity``, ``specificity``, ``accuracy``, ``roc_auc``,
    ``pr_auc`` (average precision, atypical positive), ``ece`` (see :func:`expected_calibration_error`),
    ``brier``, ``n``, ``n_pos``, ``tp``, ``fp``, ``tn``, ``fn``, ``threshold`` (``None`` when the
    per-figure thresholds differ). Undefined values (a class absent) are ``None``. Raises
    ``ValueError`` for NaN/inf or out-of-range probabilities.
    """
    y = _labels(y_true)
    p = _probabilities(p_atypical, y.size)
    t = _threshold(threshold, y.size)
    out = classification_metrics(y, (p >= t).astype(np.int64), p)
    both = 0 < out["n_pos"] < out["n"]
    out["pr_auc"] = float(average_precision_score(y, p)) if both else None
    out["ece"] = expected_calibration_error(y, p)
    out["brier"] = float(brier_score_loss(y, p, labels=[0, 1]))
    out["threshold"] = _threshold_value(t)
    return out


def best_threshold(y_true: Any, p_atypical: Any) -> float:
    """The threshold that maximises balanced accuracy on these figures.

    Candidates are the midpoints between consecutive distinct values of p(atypical) (any threshold
    between two neighbours gives the same decisions, the midpoint is the most robust choice). Ties
    go to the candidate closest to 0.5, then to the lower one. Returns 0.5 when all probabilities are
    equal. Raises ``ValueError`` when a class is absent (balanced accuracy is undefined).
    """
    y = _labels(y_true)
    p = _probabilities(p_atypical, y.size)
    if y.min() == y.max():
        raise ValueError("best_threshold needs both normal and atypical figures")
    # roc_curve scans "p >= s" for every distinct s, highest first (plus +inf: nothing positive).
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    ba = (tpr + 1.0 - fpr) / 2.0
    uniq = np.unique(p)  # ascending
    if uniq.size < 2:
        return 0.5
    # thr[1:] are the distinct values descending; the lowest (everything positive) has no midpoint.
    s = thr[1:-1]
    lower = uniq[np.searchsorted(uniq, s) - 1]
    mids = (s + lower) / 2.0
    mids = np.where(mids > lower, mids, s)  # neighbours one float apart
    scores = ba[1:-1]
    best = scores.max()
    cand = mids[np.isclose(scores, best, rtol=0.0, atol=1e-12)]
    dist = np.abs(cand - 0.5)
    cand = cand[np.isclose(dist, dist.min(), rtol=0.0, atol=1e-12)]
    return float(cand.min())


# ----------------------------------------------------------------------------------------- bootstrap
def _count_metrics(tp: np.ndarray, fp: np.ndarray, tn: np.ndarray, fn: np.ndarray) -> dict[str, np.ndarray]:
    """Count-based metrics for many bootstrap replicates at once (NaN where undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = tp / (tp + fn)
        spec = tn / (tn + fp)
        return {
            "sensitivity": sens,
            "specificity": spec,
            "balanced_accuracy": (sens + spec) / 2.0,
            "accuracy": (tp + tn) / (tp + fp + tn + fn),
        }


def _weighted_metric(name: str, y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    keep = w > 0
    y_k, p_k, w_k = y[keep], p[keep], w[keep]
    if name == "brier":
        return float(brier_score_loss(y_k, p_k, sample_weight=w_k, labels=[0, 1]))
    if y_k.min() == y_k.max():
        return float("nan")
    if name == "roc_auc":
        return float(roc_auc_score(y_k, p_k, sample_weight=w_k))
    if name == "pr_auc":
        return float(average_precision_score(y_k, p_k, sample_weight=w_k))
    raise ValueError(f"unknown bootstrap metric {name!r}; choose from {list(BOOTSTRAP_METRICS)}")


def bootstrap_ci(
    y_true: Any,
    p_atypical: Any,
    threshold: Threshold = 0.5,
    groups: Sequence[Any] | None = None,
    metrics: Sequence[str] = ("balanced_accuracy",),
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap intervals that resample whole groups (slides) with replacement.

    Figures of one slide are correlated, so resampling figures would give intervals that are too
    narrow; ``groups=None`` resamples figures (each its own group). A replicate is a multiset of
    groups, applied as per-figure sample weights. Replicates where a metric is undefined (a class
    absent) are left out for that metric; a metric undefined in every replicate gets ``None``.
    Returns ``{metric: (lo, hi)}`` at the ``alpha/2`` and ``1 - alpha/2`` percentiles.
    """
    y = _labels(y_true)
    p = _probabilities(p_atypical, y.size)
    t = _threshold(threshold, y.size)
    unknown = [m for m in metrics if m not in BOOTSTRAP_METRICS]
    if unknown:
        raise ValueError(f"unknown bootstrap metric(s) {unknown}; choose from {list(BOOTSTRAP_METRICS)}")
    if n < 1:
        raise ValueError(f"n (bootstrap replicates) must be >= 1, got {n}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if groups is None:
        gid = np.arange(y.size)
    else:
        g = np.asarray(groups, dtype=object)
        if g.shape != (y.size,):
            raise ValueError(f"groups has {g.shape[0] if g.ndim else 0} values but y_true has {y.size}")
        _, gid = np.unique(g.astype(str), return_inverse=True)
    n_groups = int(gid.max()) + 1
    rng = np.random.default_rng(seed)
    # counts[r, g]: how often group g was drawn in replicate r.
    counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n).astype(np.float64)

    values: dict[str, np.ndarray] = {}
    wanted_counts = [m for m in metrics if m in _COUNT_METRICS]
    if wanted_counts:
        pred = p >= t
        per_group = np.zeros((n_groups, 4))
        for col, mask in enumerate((pred & (y == 1), pred & (y == 0), ~pred & (y == 0), ~pred & (y == 1))):
            per_group[:, col] = np.bincount(gid, weights=mask.astype(np.float64), minlength=n_groups)
        tp, fp, tn, fn = (counts @ per_group).T
        computed = _count_metrics(tp, fp, tn, fn)
        values.update({m: computed[m] for m in wanted_counts})
    for m in metrics:
        if m not in values:
            values[m] = np.array([_weighted_metric(m, y, p, counts[r, gid]) for r in range(n)])

    out: dict[str, tuple[float, float] | None] = {}
    for m in metrics:
        v = values[m][~np.isnan(values[m])]
        if v.size == 0:
            out[m] = None
        else:
            lo, hi = np.quantile(v, [alpha / 2.0, 1.0 - alpha / 2.0])
            out[m] = (float(lo), float(hi))
    return out


# ------------------------------------------------------------------------------------------- domains
def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=STD_DDOF)) if arr.size > STD_DDOF else None
    return float(arr.mean()), std


def format_mean_std(mean: float | None, std: float | None, digits: int = 3) -> str:
    """``"0.851 ± 0.037"`` (``"n/a"`` when undefined; no ``±`` part with a single domain)."""
    if mean is None:
        return "n/a"
    if std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def per_domain_metrics(
    y_true: Any,
    p_atypical: Any,
    threshold: Threshold,
    domains: Sequence[Any],
    groups: Sequence[Any] | None = None,
    n_boot: int = 0,
    ci_metrics: Sequence[str] = ("balanced_accuracy", "roc_auc"),
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics per domain, their mean ± std over domains, and pooled over all figures.

    Two summaries because two communities report differently: papers give the mean ± std of
    balanced accuracy over (held-out) domains; the MIDOG 2025 challenge ranks by balanced accuracy
    of all figures pooled. The std is the sample std (``ddof=1``, see :data:`STD_DDOF`; ``None``
    with a single domain); a domain whose balanced accuracy is undefined (one class only) is left
    out of the mean and listed in ``domains_left_out``. With ``n_boot > 0`` each domain and the
    pooled metrics get bootstrap intervals (``"ci"``, see :func:`bootstrap_ci`) that resample
    ``groups`` (slides; figures when ``None``).

    Returns ``{"threshold", "per_domain": {name: metrics (+ "ci")}, "pooled": metrics (+ "ci"),
    "domain_mean", "domain_std", "domain_mean_std" (text such as ``"0.851 ± 0.037"``),
    "std_ddof", "domains_left_out"}``; ``domain_*`` are over balanced accuracy.
    """
    y = _labels(y_true)
    p = _probabilities(p_atypical, y.size)
    t = _threshold(threshold, y.size)
    dom = np.asarray([str(d) for d in domains], dtype=object)
    if dom.shape != (y.size,):
        raise ValueError(f"domains has {dom.shape[0]} values but y_true has {y.size}")
    grp = None
    if groups is not None:
        grp = np.asarray([str(g) for g in groups], dtype=object)
        if grp.shape != (y.size,):
            raise ValueError(f"groups has {grp.shape[0]} values but y_true has {y.size}")

    def subset(mask: np.ndarray, offset: int) -> dict[str, Any]:
        t_m = t if isinstance(t, float) else t[mask]
        res = binary_metrics(y[mask], p[mask], t_m)
        if n_boot > 0:
            g = grp[mask] if grp is not None else None
            res["ci"] = bootstrap_ci(y[mask], p[mask], t_m, g, ci_metrics, n=n_boot, seed=seed + offset)
        return res

    per: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(sorted(set(dom.tolist()))):
        per[name] = subset(dom == name, i + 1)
    defined = [v["balanced_accuracy"] for v in per.values() if v["balanced_accuracy"] is not None]
    mean, std = _mean_std(defined)
    return {
        "threshold": _threshold_value(t),
        "per_domain": per,
        "pooled": subset(np.ones(y.size, dtype=bool), 0),
        "domain_mean": mean,
        "domain_std": std,
        "domain_mean_std": format_mean_std(mean, std),
        "std_ddof": STD_DDOF,
        "domains_left_out": sorted(k for k, v in per.items() if v["balanced_accuracy"] is None),
    }
