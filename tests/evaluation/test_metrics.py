"""Metrics: agreement with scikit-learn, undefined cases, thresholds, bootstrap and domain summaries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    recall_score,
    roc_auc_score,
)

from mitotype.evaluation.metrics import (
    STD_DDOF,
    best_threshold,
    binary_metrics,
    bootstrap_ci,
    calibration_bins,
    classification_metrics,
    expected_calibration_error,
    format_mean_std,
    per_domain_metrics,
)


def _data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    p = np.clip(0.25 * y + 0.75 * rng.random(n), 0.0, 1.0)
    return y, p


def test_binary_metrics_agree_with_sklearn() -> None:
    y, p = _data()
    m = binary_metrics(y, p, 0.4)
    pred = (p >= 0.4).astype(int)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(recall_score(y, pred))
    assert m["specificity"] == pytest.approx(recall_score(y, pred, pos_label=0))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    assert (m["n"], m["n_pos"], m["threshold"]) == (300, int(y.sum()), 0.4)
    assert m["tp"] + m["fn"] == m["n_pos"] and m["tn"] + m["fp"] == 300 - m["n_pos"]
    json.dumps(m, allow_nan=False)  # strict JSON: no NaN anywhere


def test_threshold_is_inclusive() -> None:
    m = binary_metrics([0, 1], [0.5, 0.5], 0.5)
    assert (m["tp"], m["fp"]) == (1, 1)


def test_single_class_gives_none_not_nan() -> None:
    m = binary_metrics([0, 0, 0], [0.1, 0.2, 0.9], 0.5)
    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert m["sensitivity"] is None and m["balanced_accuracy"] is None
    assert m["specificity"] == pytest.approx(2 / 3)
    only_pos = binary_metrics([1, 1], [0.7, 0.2], 0.5)
    assert only_pos["specificity"] is None and only_pos["sensitivity"] == 0.5
    json.dumps(m, allow_nan=False)


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([0, 1], [0.2, float("nan")], "non-finite"),
        ([0, 1], [0.2, float("inf")], "non-finite"),
        ([0, 1], [0.2, 1.5], r"\[0, 1\]"),
        ([0, 1], [-0.1, 0.5], r"\[0, 1\]"),
        ([0, 2], [0.2, 0.5], "0 \\(normal\\) / 1"),
        ([0, 1, 1], [0.2, 0.5], "has 2 values"),
        ([], [], "empty"),
    ],
)
def test_invalid_inputs_raise(y: list, p: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        binary_metrics(y, p, 0.5)


def test_nan_threshold_rejected() -> None:
    with pytest.raises(ValueError, match="threshold"):
        binary_metrics([0, 1], [0.2, 0.7], float("nan"))


def test_per_figure_thresholds() -> None:
    y, p = _data(50, seed=3)
    thr = np.where(np.arange(50) < 25, 0.3, 0.6)
    m = binary_metrics(y, p, thr)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p >= thr))
    assert m["threshold"] is None
    assert binary_metrics(y, p, np.full(50, 0.3))["threshold"] == 0.3


def test_ece_by_hand() -> None:
    # 0.1 and 0.9 fall in bins 1 and 13 of 15: |0.5 - 0.1| * 0.5 + |1.0 - 0.9| * 0.5 = 0.25
    assert expected_calibration_error([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9]) == pytest.approx(0.25)
    bins = calibration_bins([1], [1.0])
    assert len(bins) == 15 and bins[-1]["count"] == 1  # p = 1 lands in the closed last bin
    assert binary_metrics([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9])["ece"] == pytest.approx(0.25)


def test_classification_metrics_from_decisions() -> None:
    m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], [0.1, 0.6, 0.8, 0.9])
    assert (m["sensitivity"], m["specificity"], m["balanced_accuracy"]) == (1.0, 0.5, 0.75)
    assert m["roc_auc"] == 1.0


def test_best_threshold_maximises_balanced_accuracy() -> None:
    for seed in range(5):
        y, p = _data(120, seed)
        t = best_threshold(y, p)
        grid = np.unique(np.concatenate([np.linspace(0, 1, 2001), p]))
        pred = p[None, :] >= grid[:, None]  # brute force over every threshold at once
        brute = ((pred[:, y == 1].mean(axis=1) + (~pred[:, y == 0]).mean(axis=1)) / 2).max()
        assert balanced_accuracy_score(y, p >= t) == pytest.approx(brute)
        assert t not in set(p.tolist())  # a midpoint, not a data value


def test_best_threshold_midpoint_and_ties() -> None:
    assert best_threshold([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9]) == pytest.approx(0.45)
    # 0.2 and 0.775 both give balanced accuracy 0.75; 0.775 is closer to 0.5
    assert best_threshold([0, 1, 0, 1], [0.1, 0.3, 0.6, 0.95]) == pytest.approx(0.775)
    assert best_threshold([0, 1], [0.4, 0.4]) == 0.5
    with pytest.raises(ValueError, match="both"):
        best_threshold([1, 1], [0.2, 0.9])


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    y, p = _data(400, seed=1)
    groups = np.arange(400) // 10
    a = bootstrap_ci(y, p, 0.5, groups, ["balanced_accuracy", "roc_auc"], n=200, seed=7)
    b = bootstrap_ci(y, p, 0.5, groups, ["balanced_accuracy", "roc_auc"], n=200, seed=7)
    assert a == b
    m = binary_metrics(y, p, 0.5)
    for name in ("balanced_accuracy", "roc_auc"):
        lo, hi = a[name]
        assert lo < m[name] < hi


def test_bootstrap_count_path_matches_sklearn_weights() -> None:
    y, p = _data(60, seed=2)
    groups = np.arange(60) // 6
    ci = bootstrap_ci(y, p, 0.5, groups, ["balanced_accuracy", "sensitivity"], n=1, seed=11)
    # Reproduce the single replicate: groups drawn as multinomial counts, applied as weights.
    counts = np.random.default_rng(11).multinomial(10, np.full(10, 0.1), size=1)[0]
    w = counts[groups]
    keep = w > 0
    pred = p >= 0.5
    expected = balanced_accuracy_score(y[keep], pred[keep], sample_weight=w[keep])
    assert ci["balanced_accuracy"][0] == pytest.approx(expected)
    assert ci["sensitivity"][0] == pytest.approx(recall_score(y[keep], pred[keep], sample_weight=w[keep]))


def test_bootstrap_resamples_whole_groups() -> None:
    # Each slide is either all right or all wrong: figures are not independent, so resampling
    # slides must give a wider interval than resampling figures.
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(20), 20)
    y = np.tile([0, 1], 200)
    right = np.repeat(rng.random(20) < 0.7, 20)
    p = np.where(right, np.where(y == 1, 0.9, 0.1), np.where(y == 1, 0.1, 0.9))
    by_group = bootstrap_ci(y, p, 0.5, groups, ["accuracy"], n=300, seed=0)["accuracy"]
    by_figure = bootstrap_ci(y, p, 0.5, None, ["accuracy"], n=300, seed=0)["accuracy"]
    assert by_group[1] - by_group[0] > 2 * (by_figure[1] - by_figure[0])


def test_bootstrap_undefined_metric_and_bad_names() -> None:
    assert bootstrap_ci([0, 0, 0], [0.1, 0.2, 0.3], 0.5, None, ["roc_auc"], n=20) == {"roc_auc": None}
    with pytest.raises(ValueError, match="unknown bootstrap metric"):
        bootstrap_ci([0, 1], [0.1, 0.9], 0.5, None, ["f1"], n=5)


def test_per_domain_metrics_summaries() -> None:
    y, p = _data(300, seed=4)
    domains = np.array(["scanner A", "scanner B", "scanner C"])[np.arange(300) % 3]
    res = per_domain_metrics(y, p, 0.5, domains)
    bas = [
        binary_metrics(y[domains == d], p[domains == d], 0.5)["balanced_accuracy"]
        for d in sorted(set(domains))
    ]
    assert list(res["per_domain"]) == ["scanner A", "scanner B", "scanner C"]
    assert res["domain_mean"] == pytest.approx(np.mean(bas))
    assert res["domain_std"] == pytest.approx(np.std(bas, ddof=1))
    assert res["std_ddof"] == STD_DDOF == 1
    assert res["domain_mean_std"] == format_mean_std(np.mean(bas), np.std(bas, ddof=1))
    assert "±" in res["domain_mean_std"]
    assert res["pooled"] == binary_metrics(y, p, 0.5)
    assert "ci" not in res["pooled"]  # intervals only on request
    json.dumps(res, allow_nan=False)


def test_per_domain_metrics_domain_without_a_class_and_intervals() -> None:
    y = np.array([0, 1, 0, 1, 0, 0, 0])
    p = np.array([0.1, 0.8, 0.3, 0.6, 0.2, 0.7, 0.1])
    domains = ["a", "a", "a", "a", "b", "b", "b"]
    res = per_domain_metrics(y, p, 0.5, domains, groups=["s1", "s1", "s2", "s2", "s3", "s3", "s4"], n_boot=50)
    assert res["domains_left_out"] == ["b"]
    assert res["per_domain"]["b"]["balanced_accuracy"] is None
    assert res["domain_mean"] == 1.0 and res["domain_std"] is None  # one defined domain: no spread
    assert res["per_domain"]["a"]["ci"]["balanced_accuracy"] is not None
    assert res["per_domain"]["b"]["ci"]["roc_auc"] is None
    assert set(res["pooled"]["ci"]) == {"balanced_accuracy", "roc_auc"}
    json.dumps(res, allow_nan=False)
