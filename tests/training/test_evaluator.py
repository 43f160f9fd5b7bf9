"""The evaluator: scores of the model under training (the same as the inference path's), validation metrics
at the threshold its rule picks, the kept model's TTA threshold and calibration, and divergence named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mitotype.errors import MitotypeError
from mitotype.evaluation.metrics import best_threshold, binary_metrics
from mitotype.evaluation.thresholds import platt_threshold
from mitotype.models.classifier import build_classifier
from mitotype.models.predict import predict_proba
from mitotype.training.config import load_config
from mitotype.training.evaluator import Evaluator, choose_threshold
from tests.conftest import TINY_OVERRIDES

RNG = np.random.default_rng(0)
LABELS = np.repeat([0, 1], [60, 20])
VAL = np.arange(10, 80)


class Scripted(Evaluator):
    """Scores that depend on the label (and differ between one view and TTA), as a model's would."""

    def __init__(self, rule: str = "val-balanced-accuracy", fixed: float = 0.5) -> None:
        super().__init__(None, np.zeros((80, 1)), LABELS, VAL, device=torch.device("cpu"), rule=rule,
                         fixed_threshold=fixed)
        self.noise = RNG.random(80)

    def predict(self, idx: np.ndarray, tta: bool = False) -> np.ndarray:
        return np.clip(0.1 + 0.45 * LABELS[idx] + (0.3 if tta else 0.5) * self.noise[idx], 0, 1)


def test_scores_are_the_inference_paths_and_validation_is_at_the_rules_threshold(synth_figures) -> None:
    config = load_config(overrides=TINY_OVERRIDES)
    torch.manual_seed(0)
    model = build_classifier(config.model, num_domains=0).eval()
    labels = np.array([r.label for r in synth_figures.records])
    val = np.arange(0, len(labels), 3)
    evaluator = Evaluator(model, synth_figures.images, labels, val, device=torch.device("cpu"), batch_size=32)
    for tta in (False, True):
        np.testing.assert_allclose(evaluator.predict(val, tta=tta),
                                   predict_proba(model, synth_figures.images[val], batch_size=32, tta=tta), atol=1e-6)
    metrics = evaluator.validate()
    p = evaluator.predict(val)
    assert metrics["threshold"] == pytest.approx(best_threshold(labels[val], p))
    assert metrics["balanced_accuracy"] == pytest.approx(
        binary_metrics(labels[val], p, metrics["threshold"])["balanced_accuracy"])
    assert metrics["balanced_accuracy_at_0.5"] == pytest.approx(
        binary_metrics(labels[val], p, 0.5)["balanced_accuracy"])


@pytest.mark.parametrize("rule", ["val-balanced-accuracy", "val-platt", "fixed"])
def test_each_rule_picks_its_threshold(rule) -> None:
    evaluator = Scripted(rule, fixed=0.37)
    y, p = LABELS[VAL], evaluator.predict(VAL)
    expected = {"val-balanced-accuracy": best_threshold(y, p), "val-platt": platt_threshold(y, p), "fixed": 0.37}
    assert evaluator.choose_threshold(y, p) == pytest.approx(expected[rule])
    assert choose_threshold(rule, y, p, 0.37) == pytest.approx(expected[rule])
    assert evaluator.validate()["threshold"] == pytest.approx(expected[rule])


def test_the_kept_model_gets_a_tta_threshold_and_a_calibration_per_view() -> None:
    evaluator = Scripted("val-platt")
    threshold_tta, calibration = evaluator.tta_threshold_and_calibration()
    y = LABELS[VAL]
    assert threshold_tta == pytest.approx(platt_threshold(y, evaluator.predict(VAL, tta=True)))
    assert threshold_tta != pytest.approx(platt_threshold(y, evaluator.predict(VAL)), abs=1e-3)
    assert set(calibration) == {"single", "tta"}
    for cal in calibration.values():
        assert cal.slope > 0 and cal.figures == len(VAL) and cal.prevalence == pytest.approx(y.mean())


def test_non_finite_scores_are_named_as_divergence(synth_figures) -> None:
    config = load_config(overrides=TINY_OVERRIDES)
    model = build_classifier(config.model, num_domains=0).eval()
    with torch.no_grad():
        for p in model.head.parameters():
            p.fill_(float("nan"))
    labels = np.array([r.label for r in synth_figures.records])
    evaluator = Evaluator(model, synth_figures.images, labels, np.arange(8), device=torch.device("cpu"))
    with pytest.raises(MitotypeError, match="training diverged"):
        evaluator.predict(np.arange(8))
