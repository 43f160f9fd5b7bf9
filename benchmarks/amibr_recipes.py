"""Accuracy on real data: the AMi-Br benchmark split, the full strategy set against the plain recipe,
and the leave-one-strategy-out ablation on the same split.

Trains on ``benchmark_split == train`` (a slide-grouped validation split of it picks the epoch and
the thresholds), evaluates once on ``benchmark_split == test`` (826 figures, no slide shared with
training), for each recipe and seed; each run is a subprocess so its peak memory is its own. Every run
is scored single-view (at its validation threshold, and at 0.5) and with 8-view dihedral TTA (at its
TTA validation threshold); its test predictions go to ``<work>/<recipe>-seed<seed>/test_predictions.csv``.
Results are appended to ``benchmarks/results/<name>.json`` after every run; finished runs are skipped.

    python benchmarks/amibr_recipes.py --recipes plain full-cpu --seeds 0 1 2
    python benchmarks/amibr_recipes.py --ablate full-cpu --seeds 0      # full-cpu minus each strategy
    python benchmarks/amibr_recipes.py --rescore                        # score saved runs again (no training)
    python benchmarks/amibr_recipes.py --collect --work DIR             # add finished runs a stopped sweep lost
    python benchmarks/amibr_recipes.py --name amibr_recipes_gpu --set optim.device=cuda --jobs 6 \
        --seeds 0 1 2 3 4 --budget 420                                  # on a GPU: several runs at once

A recipe is a preset name, or ``<preset>-no_<strategy>``: the preset with one strategy of
``experiments.cv.STRATEGY_SWITCHES`` switched off (what ``--ablate`` runs), optionally followed by
``+<variant>`` (``VARIANTS``: ``+last`` keeps the last epoch instead of the best on validation).
``--set KEY=VALUE`` applies a config override to every run (recorded with the results). Recipes are
compared on their validation figures too (``chosen_on_validation``), so that a recipe can be picked
without looking at the test split. The ablation's figures are
paired: each variant against the full recipe with the same seed on the same test figures, the change
in balanced accuracy with a 95 % interval from resampling test slides (``cv.paired_bootstrap_delta``);
that interval covers test-set sampling only, not seed-to-seed training noise (see the recipe SDs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, combined_command, shared_data_dir, write_result

PUBLISHED = {
    "EfficientNetV2-M": 0.747, "ViT-L/16": 0.790, "Swin-B": 0.805, "H-optimus-0 + LoRA": 0.785,
    "Virchow2 + LoRA": 0.814, "H-optimus-0 linear probe": 0.632,
}


VARIANTS = {
    "last": ["optim.select_metric=last"],
    "auc": ["optim.select_metric=roc_auc"],
}
"""``<recipe>+<variant>``: config overrides on top of the recipe."""


def recipe_config(recipe: str, seed: int, epochs: int | None, extra: list[str] | None = None) -> Any:
    """The config of ``recipe`` (``<preset>[-no_<strategy>][+<variant>]``) on the shared AMi-Br data."""
    from mitotype.experiments.cv import STRATEGY_SWITCHES
    from mitotype.training.config import load_config

    base, _, variant = recipe.partition("+")
    preset, _, off = base.partition("-no_")
    overrides = [f"seed={seed}", f"data.path={shared_data_dir() / 'amibr'}"]
    if off:
        overrides.append(f"{STRATEGY_SWITCHES[off]}=false")
    if variant:
        if variant not in VARIANTS:
            raise SystemExit(f"recipe {recipe}: unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
        overrides += VARIANTS[variant]
    if epochs:
        overrides.append(f"optim.epochs={epochs}")
    return load_config(preset=preset, overrides=overrides + list(extra or []))


def benchmark_split(config: Any, cache: Path, seed: int) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """The figures and the train / validation / test indices (validation: slide-grouped, from train)."""
    from mitotype.evaluation.splits import validation_split
    from mitotype.training.inputs import load_figures

    figures = load_figures(config.data.path, cache_dir=cache)
    split = np.array([r.meta.get("benchmark_split") for r in figures.records])
    train_all, test_idx = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    train_idx, val_idx = validation_split(figures.records, train_all, fraction=config.data.val_fraction, seed=seed)
    return figures, train_idx, val_idx, test_idx


def score_run(recipe: str, seed: int, out: Path, cache: Path, extra: list[str] | None = None) -> dict[str, Any]:
    """Test metrics of a trained run: single view at its threshold and at 0.5, and 8-view TTA at its TTA
    threshold (chosen on its validation split when the run predates stored TTA thresholds)."""
    from mitotype.evaluation.metrics import best_threshold, binary_metrics
    from mitotype.ioutils import atomic_write
    from mitotype.models.artifact import load_model_artifact
    from mitotype.models.device import resolve_device
    from mitotype.models.predict import predict_proba, threshold_of

    config = recipe_config(recipe, seed, None, extra)
    figures, _, val_idx, test_idx = benchmark_split(config, cache, seed)
    device = resolve_device(config.optim.device)
    loaded = load_model_artifact(out, device=device)
    # TTA batch = views per forward: the config's eval batch, not 8x it (1024 views at 224 px held ~15 GB)
    kw = {"device": device, "precision": config.optim.precision, "batch_size": config.optim.eval_batch_size}
    threshold_tta = threshold_of(loaded.meta, tta=True) if loaded.meta.get("threshold_tta") is not None else None
    if threshold_tta is None:
        y_val = np.array([figures.records[i].label for i in val_idx])
        threshold_tta = best_threshold(y_val, predict_proba(loaded.model, figures.images[val_idx], tta=True, **kw))
    y = np.array([figures.records[i].label for i in test_idx])
    p = predict_proba(loaded.model, figures.images[test_idx], **kw)
    p_tta = predict_proba(loaded.model, figures.images[test_idx], tta=True, **kw)
    rows = [{"uid": figures.records[i].uid, "dataset": figures.records[i].dataset, "group": figures.records[i].group,
             "label": int(label), "p_atypical": float(a), "p_atypical_tta": float(b)}
            for i, label, a, b in zip(test_idx, y, p, p_tta)]

    def write_csv(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(out / "test_predictions.csv", write_csv)
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


def train_run(recipe: str, seed: int, epochs: int | None, out: Path, cache: Path,
              extra: list[str] | None = None) -> dict[str, Any]:
    """Train one recipe with one seed, then score it (runs in a child process)."""
    import torch

    from mitotype.training.trainer import Trainer

    config = recipe_config(recipe, seed, epochs, extra)
    figures, train_idx, val_idx, _ = benchmark_split(config, cache, seed)
    start = time.perf_counter()
    result = Trainer(config, figures.records, figures.images, train_idx, val_idx, out, progress=False,
                     log=lambda m: print(f"  [{recipe} seed {seed}] {m}", flush=True)).fit()
    train_s = time.perf_counter() - start
    return {
        "recipe": recipe, "seed": seed, "epochs": config.optim.epochs, "best_epoch": result.best_epoch,
        "val_balanced_accuracy": result.val_metrics["balanced_accuracy"],
        "val_roc_auc": result.val_metrics.get("roc_auc"), "train_seconds": train_s,
        "n_train": len(train_idx), "n_val": len(val_idx), "overrides": list(extra or []),
        **score_run(recipe, seed, out, cache, extra),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **({"gpu_peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30,
            "gpu": torch.cuda.get_device_name()} if torch.cuda.is_initialized() else {}),
    }


def read_predictions(path: Path, tta: bool) -> list[dict[str, Any]]:
    """A run's test predictions as ``paired_bootstrap_delta`` rows (decision at the run's threshold)."""
    run_dir = path.parent
    meta = json.loads((run_dir / "scores.json").read_text())
    threshold = meta["threshold_tta"] if tta else meta["threshold"]
    column = "p_atypical_tta" if tta else "p_atypical"
    with path.open() as f:
        return [{**row, "label": int(row["label"]), "decision": int(float(row[column]) >= threshold)}
                for row in csv.DictReader(f)]


def summarise(runs: list[dict]) -> dict:
    """Per recipe: mean, SD and range over seeds of each test figure (single view and TTA)."""
    out = {}
    for recipe in sorted({r["recipe"] for r in runs}):
        mine = [r for r in runs if r["recipe"] == recipe]
        entry: dict[str, Any] = {"n_seeds": len(mine), "seeds": [r["seed"] for r in mine]}
        for key in ("balanced_accuracy", "roc_auc", "balanced_accuracy_tta", "roc_auc_tta"):
            values = [r[f"test_{key}"] for r in mine if f"test_{key}" in r]
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
    """Each ``<preset>-no_<strategy>`` run against ``<preset>`` with the same seed, paired on test slides."""
    from mitotype.experiments.cv import paired_bootstrap_delta

    by_key = {(r["recipe"], r["seed"]): r for r in runs}
    out: dict[str, Any] = {}
    for r in runs:
        preset, _, off = r["recipe"].partition("-no_")
        base = by_key.get((preset, r["seed"]))
        if not off or base is None:
            continue
        entry: dict[str, Any] = {"seed": r["seed"], "switched_off": off}
        for tta in (False, True):
            suffix = "_tta" if tta else ""
            a = work / f"{preset}-seed{r['seed']}" / "test_predictions.csv"
            b = work / f"{r['recipe']}-seed{r['seed']}" / "test_predictions.csv"
            if a.is_file() and b.is_file():
                delta = paired_bootstrap_delta(read_predictions(a, tta), read_predictions(b, tta), seed=r["seed"])
                entry[f"delta_balanced_accuracy{suffix}"] = delta
            if f"test_roc_auc{suffix}" in r and f"test_roc_auc{suffix}" in base:  # older runs: no TTA figures
                entry[f"delta_roc_auc{suffix}"] = r[f"test_roc_auc{suffix}"] - base[f"test_roc_auc{suffix}"]
        out[f"{r['recipe']} seed {r['seed']}"] = entry
    return out


def ablation_means(paired: dict[str, Any]) -> dict[str, Any]:
    """Per strategy switched off: the seed-paired changes of :func:`ablation` averaged over seeds, with
    the per-seed values, so that one seed's luck shows as spread rather than as an effect."""
    out: dict[str, Any] = {}
    for strategy in sorted({e["switched_off"] for e in paired.values()}):
        mine = [e for e in paired.values() if e["switched_off"] == strategy]
        entry: dict[str, Any] = {"n_seeds": len(mine), "seeds": [e["seed"] for e in mine]}
        for key in ("delta_balanced_accuracy", "delta_balanced_accuracy_tta"):
            values = [e[key]["delta"] for e in mine if key in e]
            if values:
                entry[f"{key}_mean"] = float(np.mean(values))
                entry[f"{key}_per_seed"] = [round(float(v), 4) for v in values]
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
    from sklearn.metrics import balanced_accuracy_score

    from mitotype.evaluation.metrics import best_threshold, binary_metrics

    out: dict[str, Any] = {}
    for recipe in sorted({r["recipe"] for r in runs}):
        paths = [work / f"{recipe}-seed{r['seed']}" / "test_predictions.csv" for r in runs if r["recipe"] == recipe]
        paths = [path for path in paths if path.is_file()]
        entry: dict[str, Any] = {}
        for tta in (False, True):
            pairs = []
            for path in paths:
                rows = read_predictions(path, tta)
                y = np.array([row["label"] for row in rows])
                p = np.array([float(row["p_atypical_tta" if tta else "p_atypical"]) for row in rows])
                tuned = float(balanced_accuracy_score(y, [row["decision"] for row in rows]))
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
                    predictions: dict[tuple[int, bool], list[dict]]) -> dict[str, Any]:
    """``members`` (runs of one recipe) as one ensemble, as ``mitotype predict`` runs a set of models:
    probabilities averaged, threshold = mean of the members' validation thresholds. ``predictions`` holds
    each member's ``read_predictions`` rows by (seed, tta)."""
    from mitotype.evaluation.metrics import binary_metrics

    entry: dict[str, Any] = {"seeds": [r["seed"] for r in members]}
    for tta in (False, True):
        rows = [predictions[(r["seed"], tta)] for r in members]
        if any([row["uid"] for row in x] != [row["uid"] for row in rows[0]] for x in rows):
            raise ValueError(f"{recipe}: the seeds' test predictions are not over the same figures")
        column = "p_atypical_tta" if tta else "p_atypical"
        y = np.array([row["label"] for row in rows[0]])
        p = np.mean([[float(row[column]) for row in x] for x in rows], axis=0)
        threshold = float(np.mean([r["threshold_tta" if tta else "threshold"] for r in members]))
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
                   and (work / f"{recipe}-seed{r['seed']}" / "test_predictions.csv").is_file()]
        if len(members) < 2:
            continue
        predictions = {(r["seed"], tta): read_predictions(work / f"{recipe}-seed{r['seed']}" / "test_predictions.csv",
                                                          tta)
                       for r in members for tta in (False, True)}  # read once, shared by every subset below
        out[recipe] = ensemble_scores(recipe, members, predictions)
        if len(members) >= 3:
            out[recipe]["without_one_seed"] = [
                ensemble_scores(recipe, [m for m in members if m is not left], predictions) for left in members]
    return out


def child(args: argparse.Namespace, flag: str, recipe: str, seed: int) -> dict[str, Any] | None:
    """Run ``--train-one`` / ``--score-one`` in a subprocess; its result, or ``None`` when it failed.
    With ``--jobs N`` each child gets ``1/N`` of the CPU threads."""
    cmd = [sys.executable, __file__, flag, recipe, str(seed), "--work", str(args.work)]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    for item in args.set:
        cmd += ["--set", item]
    env = dict(os.environ)
    if args.jobs > 1:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return None
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])


def parse_args() -> argparse.Namespace:
    from mitotype.experiments.cv import STRATEGY_SWITCHES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=None, help="default: plain full-cpu (none with --ablate)")
    parser.add_argument("--ablate", metavar="PRESET", help="run PRESET minus each strategy (and PRESET)")
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGY_SWITCHES), default=None,
                        help="with --ablate: which strategies to switch off (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--ablate-seeds", nargs="+", type=int, default=None,
                        help="seeds of the ablation runs (default: --seeds); they queue after --recipes")
    parser.add_argument("--epochs", type=int, help="override every recipe's epochs (default: the preset's)")
    parser.add_argument("--rescore", action="store_true",
                        help="score the saved runs in the results file again (adds TTA figures), no training")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every run, e.g. optim.device=cuda (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one GPU takes several)")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="start no run after this many seconds (runs in flight finish)")
    parser.add_argument("--collect", action="store_true",
                        help="add finished runs under --work (their scores.json) missing from the results file")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mitotype-amibr-recipes"))
    parser.add_argument("--name", default="amibr_recipes", help="results file name")
    parser.add_argument("--train-one", nargs=2, metavar=("RECIPE", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--score-one", nargs=2, metavar=("RECIPE", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    return args


def one_run(args: argparse.Namespace) -> int:
    """``--train-one`` / ``--score-one``: one run in this (child) process; its record in its scores.json."""
    from mitotype.ioutils import write_json_atomic

    recipe, seed = (args.train_one or args.score_one)[0], int((args.train_one or args.score_one)[1])
    out, cache = args.work / f"{recipe}-seed{seed}", args.work / "cache"
    if args.train_one:
        run = train_run(recipe, seed, args.epochs, out, cache, args.set)
    else:
        run = score_run(recipe, seed, out, cache, args.set)
    scores = out / "scores.json"  # the run's own record; re-scoring updates it, keeping the training facts
    write_json_atomic(scores, {**(json.loads(scores.read_text()) if scores.is_file() else {}), **run}, indent=1)
    print("RESULT " + json.dumps(run), flush=True)
    return 0


def build_queue(args: argparse.Namespace, done: set[tuple[str, int]]) -> list[tuple[str, int]]:
    """(recipe, seed) pairs to train, in order: the recipes seed by seed, then the ablation seed by seed;
    pairs already in the results file are left out."""
    from mitotype.experiments.cv import STRATEGY_SWITCHES

    recipes = args.recipes or ([] if args.ablate else ["plain", "full-cpu"])
    queue = [(recipe, seed) for seed in args.seeds for recipe in recipes]
    if args.ablate:
        variants = [args.ablate] + [f"{args.ablate}-no_{s}" for s in (args.strategies or STRATEGY_SWITCHES)]
        queue += [(v, seed) for seed in (args.ablate_seeds or args.seeds) for v in variants]
    return [job for i, job in enumerate(queue) if job not in done and job not in queue[:i]]


def run_queue(args: argparse.Namespace, queue: list[tuple[str, int]], runs: list[dict],
              save: Callable[[], None]) -> int:
    """Train the queue, ``--jobs`` children at a time; each finished run is saved at once."""
    if args.jobs > 1 and queue:  # the store is built once before the children start, not by each of them
        benchmark_split(recipe_config(queue[0][0], 0, None, args.set), args.work / "cache", 0)
    start, failed = time.monotonic(), 0
    with ThreadPoolExecutor(args.jobs) as pool:
        running: dict[Future, tuple[str, int]] = {}
        while queue or running:
            while queue and len(running) < args.jobs:
                if args.budget is not None and time.monotonic() - start > args.budget:
                    print(f"budget of {args.budget:.0f} s spent: {len(queue)} runs not started", flush=True)
                    queue.clear()
                    break
                recipe, seed = queue.pop(0)
                running[pool.submit(child, args, "--train-one", recipe, seed)] = (recipe, seed)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                recipe, seed = running.pop(future)
                run = future.result()
                if run is None:
                    failed += 1
                    continue
                runs.append(run)
                save()
                print(f"{recipe} seed {seed}: test balanced accuracy {run['test_balanced_accuracy']:.4f} "
                      f"(AUC {run['test_roc_auc']:.4f}, at 0.5: {run['test_balanced_accuracy_at_0.5']:.4f}; "
                      f"TTA {run['test_balanced_accuracy_tta']:.4f}, AUC {run['test_roc_auc_tta']:.4f}) "
                      f"in {run['train_seconds'] / 60:.1f} min", flush=True)
    return 1 if failed else 0


# Overrides that change where a run computes, not what it computes: runs may differ in these and still pool.
PLACEMENT_KEYS = ("optim.device",)


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


def main() -> int:
    args = parse_args()
    if args.train_one or args.score_one:
        return one_run(args)
    path = RESULTS_DIR / f"{args.name}.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    runs: list[dict] = previous.get("figures", {}).get("runs", [])
    clash = None if args.collect or args.rescore else settings_clash(runs, args.set)
    if clash:
        print(f"{path}: {clash}", file=sys.stderr)
        return 2
    command = "python benchmarks/amibr_recipes.py " + " ".join(sys.argv[1:])
    extra = {"published_balanced_accuracy": PUBLISHED,
             "data": "AMi-Br benchmark_split train -> test (826 figures: 642 NMF, 184 AMF)"}
    if previous and (runs or args.collect):  # runs came from earlier commands: keep them all on record
        command = combined_command(str(previous.get("command")), command)
    if args.collect and previous:  # the runs were trained by the earlier command, maybe on another machine
        extra["runs_commit"] = previous.get("extra", {}).get("runs_commit", previous.get("commit"))
        extra["runs_machine"] = previous.get("extra", {}).get("runs_machine", previous.get("machine"))

    def save() -> None:
        summary, paired = summarise(runs), ablation(runs, args.work)
        write_result(args.name, command, {"runs": runs, "summary": summary,
                                          "chosen_on_validation": chosen_on_validation(summary),
                                          "seed_ensembles": ensembles(runs, args.work),
                                          "ablation": paired, "ablation_over_seeds": ablation_means(paired),
                                          "threshold_headroom": threshold_headroom(runs, args.work)},
                     extra=extra)

    if args.collect:  # finished runs whose results never reached the file (the sweep was stopped)
        known = {(r["recipe"], r["seed"]) for r in runs}
        found = [json.loads(f.read_text()) for f in sorted(args.work.glob("*/scores.json"))]
        new = [r for r in found if {"recipe", "seed", "test_balanced_accuracy"} <= r.keys()
               and (r["recipe"], r["seed"]) not in known]
        runs.extend(new)
        save()
        print(f"{len(new)} finished runs added from {args.work}; {len(runs)} in {path.name}")
        return 0
    if args.rescore:
        for run in runs:
            if not (args.work / f"{run['recipe']}-seed{run['seed']}" / "model.safetensors").is_file():
                print(f"{run['recipe']} seed {run['seed']}: no saved model under {args.work}; kept as it was")
                continue
            scores = child(args, "--score-one", run["recipe"], run["seed"])
            if scores is None:
                return 1
            run.update(scores)
            save()
            print(f"{run['recipe']} seed {run['seed']}: rescored, TTA balanced accuracy "
                  f"{run['test_balanced_accuracy_tta']:.4f} (AUC {run['test_roc_auc_tta']:.4f})", flush=True)
        return 0
    return run_queue(args, build_queue(args, {(r["recipe"], r["seed"]) for r in runs}), runs, save)


if __name__ == "__main__":
    sys.exit(main())
