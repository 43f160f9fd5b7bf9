"""Fitting the calibration map of a trained model on its validation slides, and measuring calibration per domain.

The map itself (:class:`mitotype.models.calibration.Calibration`) is applied wherever a model runs; fitting it needs
labels and scikit-learn, so it lives here, beside the metrics that judge it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mitotype.evaluation.metrics import calibration_bins, expected_calibration_error
from mitotype.models.calibration import Calibration, fitted_calibration


def fit_calibration(y_true: Any, p_atypical: Any) -> Calibration | None:
    """The Platt map of raw validation scores, or ``None`` where it cannot be fitted or would reverse the ranking
    (one class only, or scores that carry no signal)."""
    from mitotype.evaluation.thresholds import fit_platt  # scipy and scikit-learn: the training extra

    y = np.asarray(y_true)
    if len(np.unique(y)) < 2:
        return None
    return fitted_calibration(*fit_platt(y, p_atypical), y)


def _calibration_of(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    return {"n": len(y), "prevalence": float(y.mean()), "mean_p": float(p.mean()),
            "ece": expected_calibration_error(y, p), "bins": calibration_bins(y, p)}


def calibration_by_domain(y_true: Any, p_atypical: Any, domains: Any) -> dict[str, Any]:
    """``{"pooled": ..., "domains": {name: ...}}``, each with figures, atypical share, mean p(atypical), ECE and the
    reliability bins, so a report can say where the probabilities hold and where a domain's shift or prevalence
    moves them."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(p_atypical, dtype=np.float64)
    dom = np.asarray(domains).astype(str)
    return {"pooled": _calibration_of(y, p),
            "domains": {name: _calibration_of(y[dom == name], p[dom == name]) for name in sorted(set(dom.tolist()))}}


__all__ = ["calibration_by_domain", "fit_calibration"]
