"""What a labelled prediction run reports: one row per figure, and the metrics over domains and pooled.

Shared by cross-validation (out-of-fold rows) and ``mitotype evaluate`` (a trained model on a labelled
dataset), so both write the same ``predictions.csv`` columns and the same summary. Torch-free: evaluate on an
ONNX model runs in the base install.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitotype import provenance
from mitotype.data.records import FigureRecord
from mitotype.errors import ConfigError
from mitotype.evaluation.metrics import bootstrap_ci, per_domain_metrics
from mitotype.evaluation.predictions import PredictionTable

__all__ = ["environment", "prediction_rows", "summarise"]


def prediction_rows(
    records: Sequence[FigureRecord], idx: np.ndarray, p: np.ndarray, threshold: float, fold: str,
    tta: bool = False,
) -> list[dict[str, Any]]:
    """One row per figure: the prediction with everything needed to analyse it, as plain data
    (:meth:`PredictionTable.from_scores`)."""
    return PredictionTable.from_scores(records, idx, p, threshold, fold, tta=tta).as_rows()


def summarise(rows: PredictionTable | Sequence[Mapping[str, Any]], n_bootstrap: int = 1000,
              seed: int = 0) -> dict[str, Any]:
    """Per-domain, mean ± sd over domains, pooled metrics and slide-bootstrap intervals."""
    table = rows if isinstance(rows, PredictionTable) else PredictionTable.from_rows(rows)
    y, p, thr, dec = table.labels(), table.scores(), table.thresholds(), table.decisions()
    domains, groups = table.domains(), table.slides()
    # Each fold has its own threshold; metrics use the decisions, so pass per-row thresholds.
    summary = per_domain_metrics(y, p, thr, domains, groups=groups)
    metrics = ("balanced_accuracy", "roc_auc")  # the two columns of the report that show an interval
    summary["pooled_ci"] = bootstrap_ci(y, p, thr, groups, metrics=metrics, n=n_bootstrap, seed=seed)
    for name, d in summary["per_domain"].items():
        mask = domains == name
        d["ci"] = bootstrap_ci(y[mask], p[mask], thr[mask], groups[mask], metrics=metrics, n=n_bootstrap,
                               seed=seed)
    summary["n_figures"] = len(table)
    summary["decisions_atypical"] = int(dec.sum())
    return summary


def environment() -> dict[str, Any]:
    """The software (mitotype, torch, timm, peft), commit and machine a result came from, stored beside every
    result (:func:`mitotype.provenance.environment`, as the benchmarks record it too). torch is described only as
    far as it is installed; the CUDA device is named where torch was loaded (an ONNX Runtime run never loads it)."""
    return provenance.environment()


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_evaluation_folder(out_dir: str | Path, models: Sequence[str | Path]) -> None:
    """Refuse an ``evaluate`` output folder that is one of its model folders or holds the results of a
    cross-validation or ablation: its results.json, predictions.csv and report.html would be replaced by the
    evaluation's without a word (``evaluate --model CV --out CV``)."""
    out = Path(out_dir)
    for model in models:
        if out.exists() and Path(model).exists() and out.resolve() == Path(model).resolve():
            raise ConfigError(f"{out}: is also a --model folder of this command; write the evaluation to another "
                              "folder (e.g. a sub-folder of it)")
    try:
        previous = json.loads((out / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = None
    made_by = ("cross-validation" if isinstance(previous, dict) and "scheme" in previous
               else "cross-validation" if (out / "folds").is_dir()
               else "ablation" if (out / "ablation.json").is_file() else None)
    if made_by is not None:
        raise ConfigError(f"{out}: holds the results of a {made_by}, which the evaluation would overwrite; "
                          "write it to another folder (e.g. a sub-folder)")
