"""What a labelled prediction run reports: one row per figure, and the metrics over domains and pooled.

Shared by cross-validation (out-of-fold rows) and ``mitotype evaluate`` (a trained model on a labelled
dataset), so both write the same ``predictions.csv`` columns and the same summary. Torch-free: evaluate on an
ONNX model runs in the base install.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from mitotype import __version__
from mitotype.data.records import FigureRecord
from mitotype.evaluation.metrics import bootstrap_ci, per_domain_metrics

__all__ = ["environment", "prediction_rows", "summarise"]


def prediction_rows(
    records: Sequence[FigureRecord], idx: np.ndarray, p: np.ndarray, threshold: float, fold: str,
    tta: bool = False,
) -> list[dict[str, Any]]:
    """One row per figure: the out-of-fold prediction with everything needed to analyse it."""
    rows = []
    for i, prob in zip(idx, p):
        r = records[int(i)]
        rows.append(
            {
                "uid": r.uid,
                "dataset": r.dataset,
                "fold": fold,
                "domain": r.domain,
                "group": r.group,
                "p_atypical": float(prob),
                "decision": int(prob >= threshold),
                "threshold": float(threshold),
                "tta": tta,
                "label": int(r.label),
                "votes_atypical": r.atypical_votes,
                "votes_cast": r.votes_cast,
            }
        )
    return rows


def summarise(rows: list[dict[str, Any]], n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per-domain, mean ± sd over domains, pooled metrics and slide-bootstrap intervals."""
    y = np.array([r["label"] for r in rows])
    p = np.array([r["p_atypical"] for r in rows])
    thr = np.array([r["threshold"] for r in rows])
    dec = np.array([r["decision"] for r in rows])
    domains = np.array([r["domain"] for r in rows])
    groups = np.array([f"{r['dataset']}:{r['group']}" for r in rows])
    # Each fold has its own threshold; metrics use the decisions, so pass per-row thresholds.
    summary = per_domain_metrics(y, p, thr, domains, groups=groups)
    metrics = ("balanced_accuracy", "roc_auc")  # the two columns of the report that show an interval
    summary["pooled_ci"] = bootstrap_ci(y, p, thr, groups, metrics=metrics, n=n_bootstrap, seed=seed)
    for name, d in summary["per_domain"].items():
        mask = domains == name
        d["ci"] = bootstrap_ci(y[mask], p[mask], thr[mask], groups[mask], metrics=metrics, n=n_bootstrap,
                               seed=seed)
    summary["n_figures"] = len(rows)
    summary["decisions_atypical"] = int(dec.sum())
    return summary


def environment() -> dict[str, Any]:
    """The software and machine a result came from (stored beside every result).

    torch is described only as far as the run used it: its version is the installed one (``None`` in the
    base install), and the CUDA device is named where torch was loaded (an ONNX Runtime run never loads it).
    """
    torch = sys.modules.get("torch")
    return {
        "mitotype": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__ if torch is not None else _installed_version("torch"),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch is not None and torch.cuda.is_available() else None,
    }


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
