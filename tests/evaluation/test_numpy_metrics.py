"""The numpy metrics of the base install are scikit-learn's, on data with ties and sample weights."""

from __future__ import annotations

import numpy as np
import pytest

from mitotype.evaluation import metrics
from mitotype.evaluation import numpy_metrics as light

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _data(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    p = np.clip(0.35 * y + rng.random(n) * 0.7, 0, 1).round(2)  # rounded: many tied scores
    w = rng.multinomial(n, np.full(n, 1 / n)).astype(np.float64)  # a bootstrap replicate's weights, zeros too
    return y, p, w


@pytest.mark.parametrize("seed", range(4))
def test_each_metric_equals_scikit_learns(seed: int) -> None:
    y, p, w = _data(seed)
    pred = (p >= 0.5).astype(np.int64)
    np.testing.assert_array_equal(light.confusion_matrix(y, pred, labels=[0, 1]),
                                  sklearn_metrics.confusion_matrix(y, pred, labels=[0, 1]))
    assert light.accuracy_score(y, pred) == pytest.approx(sklearn_metrics.accuracy_score(y, pred), abs=1e-15)
    assert light.balanced_accuracy_score(y, pred) == pytest.approx(
        sklearn_metrics.balanced_accuracy_score(y, pred), abs=1e-15)
    for weights in (None, w):
        keep = np.ones_like(y, dtype=bool) if weights is None else weights > 0
        args = (y[keep], p[keep])
        kw = {} if weights is None else {"sample_weight": weights[keep]}
        assert light.roc_auc_score(*args, **kw) == pytest.approx(sklearn_metrics.roc_auc_score(*args, **kw),
                                                                 abs=1e-12)
        assert light.average_precision_score(*args, **kw) == pytest.approx(
            sklearn_metrics.average_precision_score(*args, **kw), abs=1e-12)
        assert light.brier_score_loss(*args, **kw) == pytest.approx(
            sklearn_metrics.brier_score_loss(*args, **kw), abs=1e-12)
    for got, expected in zip(light.roc_curve(y, p), sklearn_metrics.roc_curve(y, p, drop_intermediate=False)):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_the_metrics_module_gives_the_same_results_on_either(monkeypatch) -> None:
    y, p, _ = _data(7)
    groups = np.arange(y.size) // 10
    with_sklearn = (metrics.binary_metrics(y, p, 0.5), metrics.best_threshold(y, p),
                    metrics.bootstrap_ci(y, p, 0.5, groups, metrics.BOOTSTRAP_METRICS, n=50))
    for name in light.__all__:
        monkeypatch.setattr(metrics, name, getattr(light, name))
    with_numpy = (metrics.binary_metrics(y, p, 0.5), metrics.best_threshold(y, p),
                  metrics.bootstrap_ci(y, p, 0.5, groups, metrics.BOOTSTRAP_METRICS, n=50))
    assert with_numpy[0] == pytest.approx(with_sklearn[0], abs=1e-12)
    assert with_numpy[1] == pytest.approx(with_sklearn[1], abs=1e-12)
    for metric, interval in with_sklearn[2].items():
        assert with_numpy[2][metric] == pytest.approx(interval, abs=1e-12), metric
