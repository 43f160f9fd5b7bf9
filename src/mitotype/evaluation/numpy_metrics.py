"""scikit-learn's binary classification metrics re-done in numpy, for the base install that leaves it out.

``pip install mitotype`` classifies and evaluates with ONNX Runtime in about 200 MB; scikit-learn and SciPy
would add about 200 MB more. :mod:`mitotype.evaluation.metrics` uses scikit-learn where it is installed (the
training extra) and these functions otherwise. They follow scikit-learn's definitions step by step (its
``_binary_clf_curve``: scores sorted descending, one point per distinct score, ties together; ROC AUC by the
trapezoidal rule; average precision as the step sum over recall) for labels 0 / 1 only, and a test holds
them to scikit-learn's results on random data with ties and sample weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["accuracy_score", "average_precision_score", "balanced_accuracy_score", "brier_score_loss",
           "confusion_matrix", "roc_auc_score", "roc_curve"]


def _binary(y: Any) -> np.ndarray:
    return np.asarray(y).astype(np.int64).ravel()


def confusion_matrix(y_true: Any, y_pred: Any, labels: Any = (0, 1)) -> np.ndarray:
    """``[[tn, fp], [fn, tp]]`` for labels 0 / 1 (``labels`` must be ``[0, 1]``, as the callers pass it)."""
    if list(labels) != [0, 1]:
        raise ValueError(f"binary confusion matrix over labels [0, 1] only, got {list(labels)}")
    y, pred = _binary(y_true), _binary(y_pred)
    return np.bincount(2 * y + pred, minlength=4).reshape(2, 2)


def accuracy_score(y_true: Any, y_pred: Any) -> float:
    """The fraction of decisions equal to the labels."""
    return float(np.mean(_binary(y_true) == _binary(y_pred)))


def balanced_accuracy_score(y_true: Any, y_pred: Any) -> float:
    """The mean over the classes present of each class's recall (scikit-learn's definition)."""
    cm = confusion_matrix(y_true, y_pred)
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def _clf_curve(y_true: Any, y_score: Any, sample_weight: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive (weighted) counts at each distinct score, highest first, and those scores."""
    y = _binary(y_true).astype(np.float64)
    s = np.asarray(y_score, dtype=np.float64).ravel()
    w = np.ones_like(s) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).ravel()
    order = np.argsort(s, kind="mergesort")[::-1]
    y, s, w = y[order], s[order], w[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # the last figure of each run of tied scores
    tps = np.cumsum(y * w)[ends]
    fps = np.cumsum((1.0 - y) * w)[ends]
    return fps, tps, s[ends]


def roc_curve(y_true: Any, y_score: Any, sample_weight: Any = None,
              drop_intermediate: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` with every distinct score a threshold (``drop_intermediate`` is not
    supported: the callers ask for every point), the first threshold ``inf`` (nothing called positive)."""
    if drop_intermediate:
        raise ValueError("drop_intermediate=True is not supported here")
    fps, tps, thresholds = _clf_curve(y_true, y_score, sample_weight)
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    return fps / fps[-1], tps / tps[-1], np.r_[np.inf, thresholds]


def roc_auc_score(y_true: Any, y_score: Any, sample_weight: Any = None) -> float:
    """Area under the ROC curve by the trapezoidal rule (ties count half)."""
    fpr, tpr, _ = roc_curve(y_true, y_score, sample_weight)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision_score(y_true: Any, y_score: Any, sample_weight: Any = None) -> float:
    """Average precision: the sum over thresholds of (recall step) x precision, atypical positive."""
    fps, tps, _ = _clf_curve(y_true, y_score, sample_weight)
    called = tps + fps
    precision = np.divide(tps, called, out=np.zeros_like(tps), where=called != 0)
    recall = tps / tps[-1]
    precision, recall = np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0]
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def brier_score_loss(y_true: Any, y_proba: Any, sample_weight: Any = None, labels: Any = (0, 1)) -> float:
    """The (weighted) mean squared difference between p(atypical) and the 0 / 1 label."""
    y = _binary(y_true).astype(np.float64)
    p = np.asarray(y_proba, dtype=np.float64).ravel()
    return float(np.average((y - p) ** 2, weights=sample_weight))
