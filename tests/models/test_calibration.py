"""Calibrated p(atypical): a monotone map that keeps every decision, and its re-expression at another prevalence."""

from __future__ import annotations

import numpy as np
import pytest

from mitotype.errors import MitotypeError
from mitotype.evaluation.metrics import expected_calibration_error
from mitotype.evaluation.thresholds import fit_platt
from mitotype.models.calibration import Calibration, fitted_calibration, shift_prior


def _overconfident(n: int = 6000, prevalence: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores like a class-balanced model's: pushed toward atypical and too extreme."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    z = rng.standard_normal(n) + 2.0 * y
    return y, 1 / (1 + np.exp(-(3.0 * z - 2.0)))


def test_platt_map_calibrates_and_keeps_every_decision() -> None:
    y, p = _overconfident()
    fit_y, fit_p, test_y, test_p = y[:3000], p[:3000], y[3000:], p[3000:]
    cal = fitted_calibration(*fit_platt(fit_y, fit_p), fit_y)
    assert cal is not None and cal.figures == 3000 and cal.prevalence == pytest.approx(fit_y.mean())
    q = cal.apply(test_p)
    assert expected_calibration_error(test_y, test_p) > 0.1
    assert expected_calibration_error(test_y, q) < 0.03
    for t in (0.05, 0.3, 0.5, float(np.median(test_p)), 0.97):
        assert np.array_equal(q >= cal.threshold(t), test_p >= t)
    assert np.all(np.diff(cal.apply(np.linspace(0, 1, 1001))) >= 0)  # monotone, ends included


def test_calibration_round_trips_and_refuses_what_would_reverse_the_ranking() -> None:
    cal = Calibration(slope=0.8, intercept=-1.1, prevalence=0.22, figures=600)
    assert Calibration.from_dict(cal.to_dict()) == cal
    with pytest.raises(MitotypeError, match="slope must be positive"):
        Calibration(slope=-0.5, intercept=0.0, prevalence=0.2, figures=10)
    with pytest.raises(MitotypeError, match=r"model\.safetensors: expected the keys"):
        Calibration.from_dict({"slope": 1.0}, where="model.safetensors")
    with pytest.raises(MitotypeError, match="finite"):
        Calibration.from_dict(cal.to_dict() | {"intercept": float("nan")})
    assert fitted_calibration(-0.2, 0.0, [0, 1, 0]) is None  # no signal: no calibration rather than a reversal
    assert fitted_calibration(1.0, 0.0, [0, 0, 0]) is None


def test_shift_prior_recalibrates_at_a_lower_prevalence() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(40000) < 0.2).astype(int)
    z = rng.standard_normal(len(y)) + 2.0 * y
    p20 = 1 / (1 + np.exp(-(2.0 * z - 2.0 - np.log(4.0))))  # exact posterior at 20 %
    keep = (y == 0) | (rng.random(len(y)) < 0.21)  # resample to about 5 % atypical
    y5, p5 = y[keep], p20[keep]
    assert 0.04 < y5.mean() < 0.06
    assert expected_calibration_error(y5, p5) > 0.05
    assert expected_calibration_error(y5, shift_prior(p5, 0.2, float(y5.mean()))) < 0.02
    assert np.allclose(shift_prior(p20, 0.2, 0.2), p20)
    with pytest.raises(MitotypeError, match="to_prevalence"):
        shift_prior(p20, 0.2, 0.0)


def test_decisions_hold_at_any_prevalence_and_for_steep_maps() -> None:
    """A map read as 0.5 * (1 + tanh(z / 2)) is exactly 0 below z = -37: at a prevalence of 1e-17 the threshold and
    every score beneath it tied at 0, so every figure became atypical (outside probe, `predict --prevalence 1e-17`)."""
    p = np.linspace(0.001, 0.999, 999)
    threshold = 0.22
    for prevalence in (1e-17, 1e-100, 1e-300, 1 - 1e-12):
        shifted = shift_prior(p, 0.22, prevalence)
        moved = float(shift_prior(np.array([threshold]), 0.22, prevalence)[0])
        assert np.array_equal(shifted >= moved, p >= threshold), prevalence
    steep = Calibration(slope=60.0, intercept=0.0, prevalence=0.22, figures=600)
    assert np.array_equal(steep.apply(p) >= steep.threshold(0.4), p >= 0.4)
    assert np.all(np.diff(steep.apply(np.linspace(0.3, 0.4, 101))) > 0)  # still strictly increasing where it matters


def test_hand_edited_maps_of_the_wrong_types_are_refused() -> None:
    """A model's metadata is JSON a person can edit: ``true`` is no slope and ``"many"`` no count of figures."""
    good = Calibration(slope=0.8, intercept=-1.1, prevalence=0.22, figures=600).to_dict()
    for entry, problem in ((good | {"slope": True}, "finite numbers"), (good | {"figures": "many"}, "whole number"),
                           (good | {"figures": -3}, "whole number"), (good | {"figures": 2.5}, "whole number"),
                           (good | {"figures": False}, "whole number")):
        with pytest.raises(MitotypeError, match=rf"model\.safetensors: metadata 'calibration.single': .*{problem}"):
            Calibration.from_dict(entry, where="model.safetensors: metadata 'calibration.single'")
