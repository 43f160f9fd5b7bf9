"""Cross-validation and ablation of trained models: what tells whether a model generalises.

Leave-one-domain-out holds out a whole scanner/lab/tumour; the held-out domain never reaches model
selection, early stopping or the threshold, which all come from a slide-grouped validation split
of the training domains. Every fold leaves ``folds/<name>/predictions.json`` as its completion
mark, so an interrupted cross-validation resumes at the first unfinished fold.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from mitotype.data.records import FigureRecord
from mitotype.errors import ConfigError, MitotypeError
from mitotype.evaluation.report import write_ablation_report, write_predictions_csv, write_report
from mitotype.evaluation.splits import assert_no_leak, grouped_stratified_kfold, leave_one_domain_out, validation_split
from mitotype.evaluation.summary import environment, prediction_rows, summarise
from mitotype.ioutils import write_json_atomic
from mitotype.models.artifact import load_model_artifact
from mitotype.models.device import resolve_device
from mitotype.models.predict import predict_proba, threshold_of
from mitotype.training.config import TrainConfig, load_config, to_dict
from mitotype.training.inputs import Figures
from mitotype.training.resume import read_resume_state
from mitotype.training.strategies.registry import ablation_strategies, strategy_switches
from mitotype.training.trainer import ProgressFactory, Trainer, init_distributed_from_env, run_fingerprint

STRATEGY_SWITCHES = strategy_switches()
"""Each strategy of the method and the switch that turns it off, for ``mitotype ablate`` (from the registry)."""


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "fold"


def check_fold_folders(folds: Sequence[Any]) -> None:
    """Refuse folds whose names map to one folder (``X Y`` and ``X/Y``): one would reuse the other's results."""
    by_slug: dict[str, list[str]] = {}
    for fold in folds:
        by_slug.setdefault(_slug(fold.name), []).append(fold.name)
    clashes = {slug: names for slug, names in by_slug.items() if len(names) > 1}
    if clashes:
        slug, names = next(iter(clashes.items()))
        raise ConfigError(f"folds {names} would share the folder folds/{slug}: rename a domain so that the names "
                          "differ in letters, digits or '_.-'")


def fold_model_dir(cv_dir: str | Path, fold_name: str) -> Path:
    """Where ``run_cv`` keeps the model of fold ``fold_name`` (for analyses that reuse trained folds)."""
    return Path(cv_dir) / "folds" / _slug(fold_name) / "model"


def make_folds(records: list[FigureRecord], scheme: str, k: int, seed: int) -> list[Any]:
    """The folds of a cross-validation scheme: leave-one-domain-out or slide-grouped stratified k-fold."""
    if scheme == "lodo":
        folds = leave_one_domain_out(records)
        if len(folds) < 2:
            raise ConfigError("leave-one-domain-out needs at least two domains (choose --domain)")
        return folds
    if scheme == "kfold":
        return grouped_stratified_kfold(records, k=k, seed=seed)
    raise ConfigError(f"unknown cross-validation scheme '{scheme}' (lodo or kfold)")


def select_folds(folds: list[Any], only: Sequence[str] | None) -> list[Any]:
    """``folds`` restricted to and ordered as ``only`` (fold names or held-out domains); all when ``None``."""
    if not only:
        return folds
    by_name = {f.name: f for f in folds} | {f.name.removeprefix("lodo-"): f for f in folds}
    unknown = [name for name in only if name not in by_name]
    if unknown:
        raise ConfigError(f"unknown fold(s) {unknown}; the folds are {[f.name for f in folds]}")
    chosen = [by_name[name] for name in only]
    repeated = sorted({f.name for f in chosen if sum(c is f for c in chosen) > 1})
    if repeated:
        raise ConfigError(f"fold(s) {repeated} given more than once: each fold's figures count once")
    return chosen


def run_cv(
    config: TrainConfig,
    figures: Figures,
    out_dir: str | Path,
    scheme: str = "lodo",
    k: int = 5,
    resume: bool = True,
    tta: bool = False,
    progress: ProgressFactory | None = None,
    report: bool = True,
    n_bootstrap: int = 1000,
    log: Callable[[str], None] | None = None,
    only: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train one model per fold, predict its held-out figures, and summarise out-of-fold predictions.

    ``only``: run just these folds, in this order (a fold's name, e.g. ``lodo-TUPAC16``, or its held-out
    domain): to spread folds over machines, or to do the most telling fold first; the summary then
    covers those folds only.

    ``progress`` and ``log`` are the callbacks the CLI supplies (bars and lines); silent by default.
    """
    log = log or (lambda _msg: None)
    records = figures.records
    all_folds = make_folds(records, scheme, k, config.seed)
    check_fold_folders(all_folds)
    folds = select_folds(all_folds, only)  # refused before any folder exists
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    fold_info = []
    for n, fold in enumerate(folds):
        fold_dir = out_dir / "folds" / _slug(fold.name)
        done = fold_dir / "predictions.json"
        fold_rows = None
        if resume and done.is_file():
            check_fold_reusable(config, records, fold, fold_dir / "model")
            fold_rows = json.loads(done.read_text())
        trained = fold_rows is not None
        if fold_rows and bool(fold_rows[0].get("tta", False)) != tta:
            log(f"fold {n + 1}/{len(folds)} {fold.name}: trained, predicted {'without' if tta else 'with'} "
                "TTA before; predicting its held-out figures again")
            fold_rows = None
        elif fold_rows is not None:
            log(f"fold {n + 1}/{len(folds)} {fold.name}: already done, {len(fold_rows)} predictions reused")
        if not trained:
            _train_fold(config, figures, fold, fold_dir / "model", f"fold {n + 1}/{len(folds)}", resume, progress,
                        log)
        if fold_rows is None:
            fold_rows = _predict_fold(config, figures, fold, fold_dir / "model", tta)
            write_json_atomic(done, fold_rows)
        fold_info.append(
            {
                "name": fold.name,
                "n_test": len(fold_rows),
                "threshold": fold_rows[0]["threshold"] if fold_rows else None,
            }
        )
        rows.extend(fold_rows)
    summary = summarise(rows, n_bootstrap=n_bootstrap, seed=config.seed)
    results = {
        "scheme": scheme,
        "k": k if scheme == "kfold" else None,
        "folds": fold_info,
        "summary": summary,
        "config": to_dict(config),
        "environment": environment(),
        "wall_seconds": time.perf_counter() - start,
        "tta": tta,
    }
    write_json_atomic(out_dir / "results.json", results)
    write_predictions_csv(out_dir / "predictions.csv", rows)
    if report:
        write_report(out_dir / "report.html", results, rows, title=f"mitotype {scheme} cross-validation")
    return results


def _fold_split(config: TrainConfig, records: list[FigureRecord], fold: Any) -> tuple[np.ndarray, np.ndarray]:
    """A fold's training figures split by slide into the part that trains and the part that validates."""
    return validation_split(records, fold.train_idx, fraction=config.data.val_fraction, seed=config.seed)


def check_fold_reusable(config: TrainConfig, records: list[FigureRecord], fold: Any, model_dir: Path) -> None:
    """Refuse to reuse a finished fold that other settings or other figures trained (its resume state's
    fingerprint differs), so a rerun into the same folder never reports another recipe's predictions."""
    state = model_dir / "last_state.pt"
    folder = model_dir.parent
    if not state.is_file():
        raise ConfigError(f"{folder}: finished fold {fold.name} has no last_state.pt, so it cannot be checked "
                          "against these settings; use a new output folder, or cv --restart to retrain it")
    train_idx, val_idx = _fold_split(config, records, fold)
    expected = run_fingerprint(config, records, train_idx, val_idx, init_distributed_from_env()[1])
    try:
        read_resume_state(state, fingerprint=expected)
    except MitotypeError:
        raise ConfigError(f"{folder}: fold {fold.name} was trained with other settings or other figures; use "
                          "the same ones, a new output folder, or cv --restart to retrain it") from None


def _train_fold(config: TrainConfig, figures: Figures, fold: Any, model_dir: Path, label: str, resume: bool,
                progress: ProgressFactory | None, log: Callable[[str], None]) -> None:
    """Train one fold's model on a slide-grouped part of its training figures, validated on the rest."""
    records = figures.records
    train_idx, val_idx = _fold_split(config, records, fold)
    assert_no_leak(records, train_idx, fold.test_idx)
    assert_no_leak(records, val_idx, fold.test_idx)
    log(f"{label} {fold.name}: train {len(train_idx)}, validation {len(val_idx)}, test {len(fold.test_idx)}")
    trainer = Trainer(config, records, figures.images, train_idx, val_idx, model_dir, progress=progress,
                      log=lambda m: log("  " + m))
    trainer.fit(resume=resume)


def _predict_fold(config: TrainConfig, figures: Figures, fold: Any, model_dir: Path, tta: bool) -> list[dict[str, Any]]:
    """The fold model's prediction rows for its held-out figures."""
    loaded = load_model_artifact(model_dir, device=resolve_device(config.optim.device))
    test_idx = np.asarray(fold.test_idx)
    p = predict_proba(loaded.model, figures.images[test_idx], batch_size=config.optim.eval_batch_size, tta=tta,
                      device=resolve_device(config.optim.device), precision=config.optim.precision)
    # TTA averages views and pulls scores inward: its decisions use the threshold chosen on TTA validation scores
    threshold = threshold_of(loaded.meta, tta)
    return prediction_rows(figures.records, test_idx, p, threshold, fold.name, tta=tta)


# --------------------------------------------------------------------------- ablation


def paired_bootstrap_delta(
    base: list[dict[str, Any]], other: list[dict[str, Any]], n: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Change in pooled balanced accuracy (other - base) with a 95 % interval, resampling slides."""
    by_uid = {(r["dataset"], r["uid"]): r for r in other}
    pairs = [(r, by_uid[(r["dataset"], r["uid"])]) for r in base if (r["dataset"], r["uid"]) in by_uid]
    y = np.array([a["label"] for a, _ in pairs])
    da = np.array([a["decision"] for a, _ in pairs])
    db = np.array([b["decision"] for _, b in pairs])
    groups = np.array([f"{a['dataset']}:{a['group']}" for a, _ in pairs])
    uniq, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    point = balanced_accuracy_score(y, db) - balanced_accuracy_score(y, da)
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(n):
        pick = np.concatenate([members[g] for g in rng.integers(0, len(uniq), len(uniq))])
        if len(np.unique(y[pick])) < 2:
            continue
        deltas.append(balanced_accuracy_score(y[pick], db[pick]) - balanced_accuracy_score(y[pick], da[pick]))
    lo, hi = np.percentile(deltas, [2.5, 97.5]) if deltas else (float("nan"), float("nan"))
    return {"delta": float(point), "ci_low": float(lo), "ci_high": float(hi)}


def run_ablation(
    config: TrainConfig,
    figures: Figures,
    out_dir: str | Path,
    strategies: Sequence[str] | None = None,
    scheme: str = "lodo",
    k: int = 5,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Cross-validate with everything on, then with each strategy off; tabulate the change."""
    log = log or (lambda _msg: None)
    out_dir = Path(out_dir)
    names = list(strategies or ablation_strategies(config.strategies))
    unknown = [s for s in names if s not in STRATEGY_SWITCHES]
    if unknown:
        raise ConfigError(f"unknown strategy {unknown}; choose from {list(STRATEGY_SWITCHES)}")
    base_dict = to_dict(config)
    variants = {"all": config}
    for name in names:
        variants[f"no_{name}"] = load_config(base_dict, overrides=[f"{STRATEGY_SWITCHES[name]}=false"])
    outcome: dict[str, Any] = {}
    rows_by_variant = {}
    for variant, cfg in variants.items():
        log(f"== ablation variant {variant}")
        res = run_cv(
            cfg,
            figures,
            out_dir / variant,
            scheme=scheme,
            k=k,
            progress=progress,
            report=False,
            n_bootstrap=200,
            log=log,
        )
        rows_by_variant[variant] = _read_rows(out_dir / variant, [f["name"] for f in res["folds"]])
        outcome[variant] = {
            "pooled": res["summary"]["pooled"],
            "domain_mean": res["summary"]["domain_mean"],
            "domain_std": res["summary"]["domain_std"],
        }
    for variant in variants:
        if variant != "all":
            outcome[variant]["delta_vs_all"] = paired_bootstrap_delta(
                rows_by_variant["all"], rows_by_variant[variant], seed=config.seed
            )
    table = {
        "scheme": scheme,
        "variants": outcome,
        "switches": {k: STRATEGY_SWITCHES[k] for k in names},
        "config": base_dict,
        "environment": environment(),
    }
    write_json_atomic(out_dir / "ablation.json", table)
    write_ablation_report(out_dir / "ablation.html", table)
    return table


def _read_rows(cv_dir: Path, fold_names: list[str]) -> list[dict[str, Any]]:
    """Out-of-fold rows of the named folds only (an older run in the same folder may have left others)."""
    rows: list[dict[str, Any]] = []
    for name in fold_names:
        rows.extend(json.loads((cv_dir / "folds" / _slug(name) / "predictions.json").read_text()))
    return rows
