"""The hold-out experiment: recipes and seeds trained on one split of a dataset, scored once on another.

Any dataset whose records carry a split column (AMi-Br's ``benchmark_split``) works: training uses the
``train`` rows, a slide-grouped validation part of them picks the epoch and the thresholds, and the
``test`` rows are scored once per run, single view (at the validation threshold and at 0.5) and with
8-view dihedral TTA (at the TTA validation threshold). Each run leaves ``<work>/<recipe>-seed<seed>/``
with its model, ``scores.json`` and ``test_predictions.csv``; the tables over runs (mean and SD over
seeds, seed ensembles, the paired leave-one-strategy-out ablation) are computed from those files.

A recipe is a preset name, or ``<preset>-no_<strategy>`` (the preset with one strategy of the registry
switched off), optionally followed by ``+<variant>`` (:data:`VARIANTS`).
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score

from mitotype.errors import ConfigError, DataError
from mitotype.evaluation.comparisons import Verdict, noise_floor, paired_bootstrap_delta
from mitotype.evaluation.metrics import best_threshold, binary_metrics
from mitotype.evaluation.predictions import PredictionTable, read_predictions
from mitotype.evaluation.splits import assert_no_leak, validation_split
from mitotype.evaluation.summary import environment
from mitotype.ioutils import write_json_atomic
from mitotype.models.artifact import load_model_artifact
from mitotype.models.device import resolve_device
from mitotype.models.predict import ensemble_threshold, predict_proba, threshold_of
from mitotype.training.config import TrainConfig, load_config
from mitotype.training.inputs import Figures, load_data_figures
from mitotype.training.strategies.registry import ablation_strategies, strategy_switches
from mitotype.training.trainer import Trainer

TEST_PREDICTIONS = "test_predictions.csv"
"""A run's predictions of the test figures, one way of scoring per row (:mod:`mitotype.evaluation.predictions`)."""

VARIANTS = {
    "last": ["optim.select_metric=last"],
    "auc": ["optim.select_metric=roc_auc"],
}
"""``<recipe>+<variant>``: config overrides on top of the recipe."""


def data_overrides(data: str | Path | Sequence[str | Path]) -> list[str]:
    """``data.path`` for one dataset, ``data.sources`` for several (a list of two or more paths)."""
    paths = [str(p) for p in data] if isinstance(data, list | tuple) else [str(data)]
    if len(paths) == 1:
        return [f"data.path={json.dumps(paths[0])}"]
    return ["data.path=", f"data.sources={json.dumps([{'path': p} for p in paths])}"]


def data_text(data: str | Path | Sequence[str | Path]) -> str:
    """The dataset(s) in words: the path, or the paths joined by `` + ``."""
    return " + ".join(map(str, data)) if isinstance(data, list | tuple) else str(data)


def recipe_config(recipe: str, seed: int, data: str | Path | Sequence[str | Path], epochs: int | None = None,
                  extra: Sequence[str] | None = None) -> TrainConfig:
    """The config of ``recipe`` (``<preset>[-no_<strategy>][+<variant>]``) on the dataset ``data`` (a list of
    paths: several datasets, see :func:`data_overrides`)."""
    base, _, variant = recipe.partition("+")
    preset, _, off = base.partition("-no_")
    overrides = [f"seed={seed}", *data_overrides(data)]
    if off:
        switches = strategy_switches()
        if off not in switches:
            raise ConfigError(f"recipe {recipe}: unknown strategy {off!r} (known: {', '.join(switches)})")
        overrides.append(f"{switches[off]}=false")
    if variant:
        if variant not in VARIANTS:
            raise ConfigError(f"recipe {recipe}: unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
        overrides += VARIANTS[variant]
    if epochs:
        overrides.append(f"optim.epochs={epochs}")
    return load_config(preset=preset, overrides=overrides + list(extra or []))


@dataclass
class HoldoutSplit:
    """Which records train, which validate (slide-grouped, from the training rows) and which test."""

    figures: Figures
    """All records of the dataset and their pixels."""
    train_idx: np.ndarray
    """Training figures."""
    val_idx: np.ndarray
    """Validation figures: pick the epoch and the thresholds."""
    test_idx: np.ndarray
    """Held-out figures, scored once per run."""
    left_out: dict[str, int] = field(default_factory=dict)
    """Figures whose split value is neither a training nor a test value, counted per value (a typo shows here)."""


def holdout_split(config: TrainConfig, cache: str | Path | None, seed: int, split_column: str = "benchmark_split",
                  train_values: Sequence[str] = ("train",), test_values: Sequence[str] = ("test",)) -> HoldoutSplit:
    """The records split by ``split_column`` (a metadata field, e.g. ``benchmark_split`` or ``scanner``),
    the validation part split off the training rows by slide."""
    d = config.data
    figures = load_data_figures(d, cache_dir=cache)
    split = np.array([r.meta.get(split_column) for r in figures.records])
    train_all = np.flatnonzero(np.isin(split, list(train_values)))
    test_idx = np.flatnonzero(np.isin(split, list(test_values)))
    if len(train_all) == 0 or len(test_idx) == 0:
        raise DataError(f"{d.description()}: no records with {split_column} in {list(train_values)} or none in "
                        f"{list(test_values)} (values present: {sorted({str(v) for v in split})})")
    try:
        assert_no_leak(figures.records, train_all, test_idx)
    except DataError as exc:
        raise DataError(f"{d.description()}: {split_column}: {exc}; keep each slide on one side") from None
    test_classes = {figures.records[i].label for i in test_idx}
    if len(test_classes) < 2:
        only = "atypical" if test_classes == {1} else "normal"
        raise DataError(f"{d.description()}: every test figure ({split_column} in {list(test_values)}) is {only}; "
                        "balanced accuracy and ROC AUC need both classes")
    rest = ~np.isin(split, list(train_values) + list(test_values))
    left_out = {str(v): int(n) for v, n in zip(*np.unique(split[rest].astype(str), return_counts=True))}
    train_idx, val_idx = validation_split(figures.records, train_all, fraction=d.val_fraction, seed=seed)
    return HoldoutSplit(figures, train_idx, val_idx, test_idx, left_out)


def score_run(config: TrainConfig, split: HoldoutSplit, out: Path) -> dict[str, Any]:
    """Test metrics of a trained run: single view at its threshold and at 0.5, and 8-view TTA at its TTA
    threshold (chosen on its validation split when the run predates stored TTA thresholds); its test
    predictions go to ``out/test_predictions.csv``."""
    figures, records = split.figures, split.figures.records
    device = resolve_device(config.optim.device)
    loaded = load_model_artifact(out, device=device)
    # TTA batch = views per forward: the config's eval batch, not 8x it (1024 views at 224 px held ~15 GB)
    kw = {"device": device, "precision": config.optim.precision, "batch_size": config.optim.eval_batch_size}
    threshold_tta = threshold_of(loaded.meta, tta=True) if loaded.meta.get("threshold_tta") is not None else None
    if threshold_tta is None:
        y_val = np.array([records[i].label for i in split.val_idx])
        threshold_tta = best_threshold(y_val, predict_proba(loaded.model, figures.images[split.val_idx], tta=True,
                                                            **kw))
    test_idx = split.test_idx
    y = np.array([records[i].label for i in test_idx])
    p = predict_proba(loaded.model, figures.images[test_idx], **kw)
    p_tta = predict_proba(loaded.model, figures.images[test_idx], tta=True, **kw)
    table = (PredictionTable.from_scores(records, test_idx, p, loaded.threshold)
             + PredictionTable.from_scores(records, test_idx, p_tta, threshold_tta, tta=True))
    table.write_csv(out / TEST_PREDICTIONS)
    tuned = binary_metrics(y, p, loaded.threshold)
    tta = binary_metrics(y, p_tta, threshold_tta)
    return {
        "threshold": loaded.threshold, "test_balanced_accuracy": tuned["balanced_accuracy"],
        "test_roc_auc": tuned["roc_auc"], "test_sensitivity": tuned["sensitivity"],
        "test_specificity": tuned["specificity"],
        "test_balanced_accuracy_at_0.5": binary_metrics(y, p, 0.5)["balanced_accuracy"],
        "threshold_tta": threshold_tta, "test_balanced_accuracy_tta": tta["balanced_accuracy"],
        "test_roc_auc_tta": tta["roc_auc"], "test_sensitivity_tta": tta["sensitivity"],
        "test_specificity_tta": tta["specificity"], "n_test": len(test_idx),
    }


def train_run(recipe: str, seed: int, config: TrainConfig, split: HoldoutSplit, out: Path,
              overrides: Sequence[str] = (), log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train one recipe with one seed, then score it; the run's record (training facts + test figures)."""
    start = time.perf_counter()
    result = Trainer(config, split.figures.records, split.figures.images, split.train_idx, split.val_idx, out,
                     log=log).fit()
    train_s = time.perf_counter() - start
    return {
        "recipe": recipe, "seed": seed, "epochs": config.optim.epochs, "best_epoch": result.best_epoch,
        "val_balanced_accuracy": result.val_metrics["balanced_accuracy"],
        "val_roc_auc": result.val_metrics.get("roc_auc"), "train_seconds": train_s,
        "n_train": len(split.train_idx), "n_val": len(split.val_idx), "overrides": list(overrides),
        **score_run(config, split, out),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **({"gpu_peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30,
            "gpu": torch.cuda.get_device_name()} if torch.cuda.is_initialized() else {}),
    }


# --------------------------------------------------------------------------- tables over runs


def run_dir(work: Path, recipe: str, seed: int) -> Path:
    """Where one run's model and test predictions live."""
    return work / f"{recipe}-seed{seed}"


def summarise(runs: list[dict]) -> dict:
    """Per recipe: mean, SD and range over seeds of each test figure (single view and TTA)."""
    out = {}
    for recipe in sorted({r["recipe"] for r in runs}):
        mine = [r for r in runs if r["recipe"] == recipe]
        entry: dict[str, Any] = {"n_seeds": len(mine), "seeds": [r["seed"] for r in mine]}
        for key in ("balanced_accuracy", "roc_auc", "balanced_accuracy_tta", "roc_auc_tta"):
            values = [r[f"test_{key}"] for r in mine if r.get(f"test_{key}") is not None]
            if values:
                entry[f"{key}_mean"] = float(np.mean(values))
                entry[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
                entry[f"{key}_range"] = [float(min(values)), float(max(values))]
        for key in ("val_balanced_accuracy", "val_roc_auc"):
            values = [r[key] for r in mine if r.get(key) is not None]
            if values:
                entry[f"{key}_mean"] = float(np.mean(values))
        out[recipe] = entry
    return out


def chosen_on_validation(summary: dict[str, Any], min_seeds: int = 3) -> dict[str, Any] | None:
    """The recipe with the best mean validation AUC over seeds (recipes with ``min_seeds`` or more), and
    its test figures: a choice made without the test split. AUC, not balanced accuracy, because each
    run's validation balanced accuracy is at a threshold and epoch tuned on that same split."""
    eligible = {k: v for k, v in summary.items() if v["n_seeds"] >= min_seeds and "val_roc_auc_mean" in v}
    if not eligible:
        return None
    best = max(eligible, key=lambda k: eligible[k]["val_roc_auc_mean"])
    ranking = sorted(eligible, key=lambda k: -eligible[k]["val_roc_auc_mean"])
    return {"recipe": best, "criterion": "mean validation ROC AUC over seeds", "min_seeds": min_seeds,
            "ranking": [[k, round(eligible[k]["val_roc_auc_mean"], 4)] for k in ranking],
            "test": {k: v for k, v in eligible[best].items() if k.endswith(("_mean", "_sd"))}}


def ablation(runs: list[dict], work: Path) -> dict[str, Any]:
    """Each ``<preset>-no_<strategy>`` run against ``<preset>`` with the same seed, paired on test slides
    (:func:`~mitotype.evaluation.comparisons.paired_bootstrap_delta`)."""
    by_key = {(r["recipe"], r["seed"]): r for r in runs}
    out: dict[str, Any] = {}
    for r in runs:
        preset, _, off = r["recipe"].partition("-no_")
        base = by_key.get((preset, r["seed"]))
        if not off or base is None:
            continue
        entry: dict[str, Any] = {"seed": r["seed"], "switched_off": off, "baseline": preset}
        for tta in (False, True):
            suffix = "_tta" if tta else ""
            a = run_dir(work, preset, r["seed"]) / TEST_PREDICTIONS
            b = run_dir(work, r["recipe"], r["seed"]) / TEST_PREDICTIONS
            if a.is_file() and b.is_file():
                delta = paired_bootstrap_delta(read_predictions(a, tta), read_predictions(b, tta), seed=r["seed"])
                entry[f"delta_balanced_accuracy{suffix}"] = delta.as_dict()
            if f"test_roc_auc{suffix}" in r and f"test_roc_auc{suffix}" in base:  # older runs: no TTA figures
                entry[f"delta_roc_auc{suffix}"] = r[f"test_roc_auc{suffix}"] - base[f"test_roc_auc{suffix}"]
        out[f"{r['recipe']} seed {r['seed']}"] = entry
    return out


def ablation_means(paired: dict[str, Any], summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per strategy switched off: the seed-paired changes of :func:`ablation` averaged over seeds, with
    the per-seed values, so that one seed's luck shows as spread rather than as an effect. With ``summary``
    (:func:`summarise` of the runs), each balanced-accuracy change is set against its baseline's sd over seeds
    (``..._noise_floor``, ``..._beats_spread``: :class:`~mitotype.evaluation.comparisons.Verdict`)."""
    out: dict[str, Any] = {}
    for strategy in sorted({e["switched_off"] for e in paired.values()}):
        mine = [e for e in paired.values() if e["switched_off"] == strategy]
        entry: dict[str, Any] = {"n_seeds": len(mine), "seeds": [e["seed"] for e in mine]}
        baseline = (summary or {}).get(mine[0].get("baseline", ""), {})
        for key, sd in (("delta_balanced_accuracy", "balanced_accuracy_sd"),
                        ("delta_balanced_accuracy_tta", "balanced_accuracy_tta_sd")):
            values = [e[key]["delta"] for e in mine if key in e]
            if values:
                verdict = Verdict(tuple(values), noise_floor(baseline.get(sd)))
                entry[f"{key}_mean"] = verdict.change
                entry[f"{key}_per_seed"] = [round(float(v), 4) for v in values]
                if summary is not None:
                    entry[f"{key}_noise_floor"] = verdict.floor
                    entry[f"{key}_beats_spread"] = verdict.beats_spread
        for key in ("delta_roc_auc", "delta_roc_auc_tta"):
            values = [e[key] for e in mine if key in e]
            if values:
                entry[f"{key}_mean"] = float(np.mean(values))
        out[strategy] = entry
    return out


def threshold_headroom(runs: list[dict], work: Path) -> dict[str, Any]:
    """Per recipe: mean test balanced accuracy at each run's validation threshold against the best any
    threshold could give on the test figures (an oracle, a diagnostic only: it says how much of the gap
    to a target is the threshold and how much the ranking, never a figure to report as a result)."""
    out: dict[str, Any] = {}
    for recipe in sorted({r["recipe"] for r in runs}):
        paths = [run_dir(work, recipe, r["seed"]) / TEST_PREDICTIONS for r in runs if r["recipe"] == recipe]
        paths = [path for path in paths if path.is_file()]
        entry: dict[str, Any] = {}
        for tta in (False, True):
            pairs = []
            for path in paths:
                rows = read_predictions(path, tta)
                y, p = rows.labels(), rows.scores()
                tuned = float(balanced_accuracy_score(y, rows.decisions()))
                pairs.append((tuned, binary_metrics(y, p, best_threshold(y, p))["balanced_accuracy"]))
            if pairs:
                suffix = "_tta" if tta else ""
                entry[f"n_seeds{suffix}"] = len(pairs)
                entry[f"at_validation_threshold{suffix}"] = float(np.mean([a for a, _ in pairs]))
                entry[f"at_best_test_threshold{suffix}"] = float(np.mean([b for _, b in pairs]))
        if entry:
            out[recipe] = entry
    return out


def ensemble_scores(recipe: str, members: list[dict],
                    predictions: dict[tuple[int, bool], PredictionTable]) -> dict[str, Any]:
    """``members`` (runs of one recipe) as one ensemble, as ``mitotype predict`` runs a set of models:
    probabilities averaged, the threshold :func:`~mitotype.models.predict.ensemble_threshold` of the
    members' validation thresholds. ``predictions`` holds each member's ``read_predictions`` rows by (seed, tta)."""
    entry: dict[str, Any] = {"seeds": [r["seed"] for r in members]}
    for tta in (False, True):
        rows = [predictions[(r["seed"], tta)] for r in members]
        if any(x.keys() != rows[0].keys() for x in rows):
            raise ValueError(f"{recipe}: the seeds' test predictions are not over the same figures")
        y = rows[0].labels()
        p = np.mean([x.scores() for x in rows], axis=0)
        threshold = ensemble_threshold(members, tta, calibrated=False)  # the members' raw scores are averaged
        m = binary_metrics(y, p, threshold)
        suffix = "_tta" if tta else ""
        entry[f"threshold{suffix}"] = threshold
        entry[f"balanced_accuracy{suffix}"] = m["balanced_accuracy"]
        entry[f"roc_auc{suffix}"] = m["roc_auc"]
    return entry


def ensembles(runs: list[dict], work: Path) -> dict[str, Any]:
    """Per recipe with two or more seeds: all its seeds as one ensemble. With three or more, also each
    ensemble that leaves one seed out (``without_one_seed``), which shows how much the figure rests on one seed."""
    out: dict[str, Any] = {}
    for recipe in sorted({r["recipe"] for r in runs}):
        members = [r for r in runs if r["recipe"] == recipe
                   and (run_dir(work, recipe, r["seed"]) / TEST_PREDICTIONS).is_file()]
        if len(members) < 2:
            continue
        predictions = {(r["seed"], tta): read_predictions(run_dir(work, recipe, r["seed"]) / TEST_PREDICTIONS, tta)
                       for r in members for tta in (False, True)}  # read once, shared by every subset below
        out[recipe] = ensemble_scores(recipe, members, predictions)
        if len(members) >= 3:
            out[recipe]["without_one_seed"] = [
                ensemble_scores(recipe, [m for m in members if m is not left], predictions) for left in members]
    return out


def finished_runs(work: Path, known: Iterable[tuple[str, int]] = ()) -> list[dict]:
    """Runs under ``work`` that finished (their ``scores.json`` holds test figures) and are not ``known``."""
    known = set(known)
    found = [json.loads(f.read_text()) for f in sorted(Path(work).glob("*/scores.json"))]
    return [r for r in found if {"recipe", "seed", "test_balanced_accuracy"} <= r.keys()
            and (r["recipe"], r["seed"]) not in known]


def tables(runs: list[dict], work: Path) -> dict[str, Any]:
    """Every table computed over the runs (what a hold-out results file holds beside the runs)."""
    summary, paired = summarise(runs), ablation(runs, work)
    return {"runs": runs, "summary": summary, "chosen_on_validation": chosen_on_validation(summary),
            "seed_ensembles": ensembles(runs, work), "ablation": paired,
            "ablation_over_seeds": ablation_means(paired, summary),
            "threshold_headroom": threshold_headroom(runs, work)}


# --------------------------------------------------------------------------- the plan and its runs


@dataclass
class HoldoutPlan:
    """Which recipes and seeds to run (and which ablation)."""

    recipes: list[str] | None = None
    """Recipes to train; ``None`` = ``plain`` and ``full-cpu`` (none when ``ablate`` is set)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds of every recipe."""
    ablate: str | None = None
    """A preset to run minus each strategy in turn (and as it is)."""
    strategies: list[str] | None = None
    """With ``ablate``: which strategies to switch off (default: those of the registry on by default)."""
    ablate_seeds: list[int] | None = None
    """Seeds of the ablation runs (default: ``seeds``); they queue after the recipes."""


def build_queue(plan: Any, done: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """(recipe, seed) pairs to train, in order: the recipes seed by seed, then the ablation seed by seed;
    pairs already done are left out. ``plan`` is a :class:`HoldoutPlan` or anything with its attributes."""
    done = set(done)
    recipes = plan.recipes or ([] if plan.ablate else ["plain", "full-cpu"])
    queue = [(recipe, seed) for seed in plan.seeds for recipe in recipes]
    if plan.ablate:
        variants = [plan.ablate] + [f"{plan.ablate}-no_{s}" for s in (plan.strategies or ablation_strategies())]
        queue += [(v, seed) for seed in (plan.ablate_seeds or plan.seeds) for v in variants]
    return [job for i, job in enumerate(queue) if job not in done and job not in queue[:i]]


PLACEMENT_KEYS = ("optim.device",)
"""Overrides that change where a run computes, not what it computes: runs may differ in these and still pool."""


def settings_clash(runs: list[dict], overrides: list[str]) -> str | None:
    """Why runs already in a results file cannot be pooled with runs under ``overrides``, or None.

    Runs are matched by (recipe, seed), so a second setting written to the same file would count the first
    setting's runs as done and mix both in one table."""
    def result_changing(items: list[str]) -> list[str]:
        return sorted(i for i in items if i.split("=", 1)[0] not in PLACEMENT_KEYS)

    wanted = result_changing(overrides)
    for run in runs:
        have = result_changing(run.get("overrides", []))
        if have != wanted:
            return (f"its {run['recipe']} seed {run['seed']} ran with --set {have or 'nothing'}, this command sets "
                    f"{wanted or 'nothing'}; give these runs their own --name and --work")
    return None


def run_holdout(data: str | Path | Sequence[str | Path], work: str | Path, plan: HoldoutPlan,
                split_column: str = "benchmark_split",
                train_values: Sequence[str] = ("train",), test_values: Sequence[str] = ("test",),
                overrides: Sequence[str] = (), epochs: int | None = None, cache: str | Path | None = None,
                log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train and score every (recipe, seed) of ``plan`` not done yet, one after the other, and write
    ``<work>/holdout.json`` (the runs and every table over them) after each run."""
    log = log or (lambda _msg: None)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "holdout.json"
    runs: list[dict] = json.loads(results_path.read_text())["runs"] if results_path.is_file() else []
    clash = settings_clash(runs, list(overrides))
    if clash:
        raise ConfigError(f"{results_path}: {clash}")
    cache = cache if cache is not None else work / "cache"

    def save() -> dict[str, Any]:
        results = {**tables(runs, work), "data": data_text(data), "split_column": split_column,
                   "train_values": list(train_values), "test_values": list(test_values), "environment": environment()}
        write_json_atomic(results_path, results, indent=1)
        return results

    results = save()
    noted = False  # the rows left out are the same for every run: say so once
    for recipe, seed in build_queue(plan, {(r["recipe"], r["seed"]) for r in runs}):
        config = recipe_config(recipe, seed, data, epochs, overrides)
        split = holdout_split(config, cache, seed, split_column, train_values, test_values)
        if split.left_out and not noted:
            noted = True
            log(f"note: {sum(split.left_out.values())} figure(s) with {split_column} in {sorted(split.left_out)} "
                "are in neither the training nor the test values; left out")
        log(f"{recipe} seed {seed}: train {len(split.train_idx)}, validation {len(split.val_idx)}, "
            f"test {len(split.test_idx)}")
        out = run_dir(work, recipe, seed)
        run = train_run(recipe, seed, config, split, out, overrides, log=lambda m: log("  " + m))
        write_json_atomic(out / "scores.json", run, indent=1)
        runs.append(run)
        results = save()
        log(f"{recipe} seed {seed}: test balanced accuracy {run['test_balanced_accuracy']:.4f} "
            f"(AUC {run['test_roc_auc']:.4f}; TTA {run['test_balanced_accuracy_tta']:.4f})")
    return results


__all__ = [
    "VARIANTS",
    "HoldoutPlan",
    "HoldoutSplit",
    "ablation",
    "ablation_means",
    "build_queue",
    "chosen_on_validation",
    "data_overrides",
    "data_text",
    "ensemble_scores",
    "ensembles",
    "finished_runs",
    "holdout_split",
    "read_predictions",
    "recipe_config",
    "run_holdout",
    "score_run",
    "settings_clash",
    "summarise",
    "tables",
    "threshold_headroom",
    "train_run",
]
