"""A trained model's p(atypical) made a probability: a monotone map fitted on its validation slides.

Class-balanced sampling, MixUp and the focal loss teach a network to score atypical figures as if half of all
figures were atypical, so its raw score overstates p(atypical) at a real prevalence (10-25 %). A Platt map,
``sigmoid(slope * logit(p) + intercept)`` fitted on the validation slides' labels (the fit itself lives in
:func:`mitotype.evaluation.thresholds.fit_platt`), turns the score into the share of atypical figures among
figures so scored, at the validation prevalence. The map is increasing, so every decision stays as it was once
the threshold is mapped too (:meth:`Calibration.threshold`).

A calibrated probability holds at the prevalence it was fitted at. :func:`shift_prior` re-expresses it at
another one (Bayes' rule on the odds: the likelihood ratio a figure carries does not depend on the prevalence),
which a user who knows the share of atypical figures in their cohort can ask for.

Only numpy here: the map is applied wherever a model runs, the light ONNX install included.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mitotype.errors import MitotypeError

_EPS = 1e-7


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Overflow-free for any z, and strictly increasing down to 1e-308: a map of 0.5 * (1 + tanh(z / 2)) reads
    exactly 0 below z = -37, where a threshold and every score beneath it would tie and all become atypical."""
    z = np.asarray(z, dtype=np.float64)
    small = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + small), small / (1.0 + small))


@dataclass(frozen=True)
class Calibration:
    """One fitted Platt map of a model's raw scores, for one way of scoring (single view or 8-view TTA)."""

    slope: float
    """Multiplies the raw score's logit; positive, else the map would reverse the ranking."""
    intercept: float
    """Added to the scaled logit: undoes the constant pull toward atypical that balanced training leaves."""
    prevalence: float
    """Share of atypical figures among the figures it was fitted on: where the probabilities hold."""
    figures: int
    """How many validation figures it was fitted on."""

    def __post_init__(self) -> None:
        values = (self.slope, self.intercept, self.prevalence)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise MitotypeError(f"calibration needs finite numbers, got {self}")
        if isinstance(self.figures, bool) or not isinstance(self.figures, int) or self.figures < 1:
            raise MitotypeError(f"calibration figures must be a whole number of at least 1, got {self.figures!r}")
        if self.slope <= 0:
            raise MitotypeError(f"calibration slope must be positive (a map that keeps the ranking), got {self.slope}")
        if not 0.0 < self.prevalence < 1.0:
            raise MitotypeError(f"calibration prevalence must lie in (0, 1), got {self.prevalence}")

    def apply(self, p_raw: Any) -> np.ndarray:
        """Calibrated p(atypical) of raw scores (float64, same shape)."""
        return _sigmoid(self.slope * _logit(p_raw) + self.intercept)

    def threshold(self, raw_threshold: float) -> float:
        """A raw-score threshold on the calibrated scale: ``apply(p) >= threshold(t)`` iff ``p >= t``."""
        return float(self.apply(np.array([raw_threshold]))[0])

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "calibration") -> Calibration:
        """Read from a model's metadata; a malformed entry names where it came from."""
        keys = ("slope", "intercept", "prevalence", "figures")
        if not isinstance(data, dict) or set(data) != set(keys):
            raise MitotypeError(f"{where}: expected the keys {list(keys)}, got {data!r}")
        try:
            return cls(**{k: data[k] for k in keys})
        except (TypeError, MitotypeError) as exc:
            raise MitotypeError(f"{where}: {exc}") from None


def fitted_calibration(slope: float, intercept: float, y_true: Any) -> Calibration | None:
    """A :class:`Calibration` from a fit on the labels ``y_true``, or ``None`` where the fit cannot keep the
    ranking (slope not positive: scores that carry no signal on validation) or the labels hold one class."""
    y = np.asarray(y_true)
    prevalence = float(np.mean(y)) if len(y) else 0.0
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope <= 0 or not 0.0 < prevalence < 1.0:
        return None
    return Calibration(slope=float(slope), intercept=float(intercept), prevalence=prevalence, figures=len(y))


def shift_prior(p: Any, from_prevalence: float, to_prevalence: float) -> np.ndarray:
    """Calibrated probabilities re-expressed at another prevalence of atypical figures.

    A probability calibrated where a share ``from_prevalence`` of figures is atypical becomes, by Bayes' rule,
    ``odds(p) * odds(to) / odds(from)`` in odds. Monotone, so decisions follow once the threshold is shifted too.
    """
    for name, value in (("from_prevalence", from_prevalence), ("to_prevalence", to_prevalence)):
        if not 0.0 < value < 1.0:
            raise MitotypeError(f"{name} must lie strictly between 0 and 1, got {value}")
    shift = math.log(to_prevalence / (1.0 - to_prevalence)) - math.log(from_prevalence / (1.0 - from_prevalence))
    return _sigmoid(_logit(p) + shift)


__all__ = ["Calibration", "fitted_calibration", "shift_prior"]
