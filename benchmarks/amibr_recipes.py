"""Accuracy on real data: the AMi-Br benchmark split, the full strategy set against the plain recipe.

Trains on ``benchmark_split == train`` (a slide-grouped validation split of it picks the epoch and
the threshold), evaluates once on ``benchmark_split == test`` (826 figures, no slide shared with
training), for each recipe and seed; each run is a subprocess so its peak memory is its own.
Results are appended to ``benchmarks/results/amibr_recipes.json`` after every run.

    python benchmarks/amibr_recipes.py --recipes plain full-cpu --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, shared_data_dir, write_result

PUBLISHED = {
    "EfficientNetV2-M": 0.747, "ViT-L/16": 0.790, "Swin-B": 0.805, "H-optimus-0 + LoRA": 0.785,
    "Virchow2 + LoRA": 0.814, "H-optimus-0 linear probe": 0.632,
}


def one_run(recipe: str, seed: int, epochs: int | None, out: Path, cache: Path) -> dict:
    """Train one recipe with one seed and score it on the test split (runs in a child process)."""
    from mitotype.evaluation.metrics import binary_metrics
    from mitotype.evaluation.splits import validation_split
    from mitotype.serving.predict import predict_proba
    from mitotype.training.checkpoint import load_model_artifact
    from mitotype.training.config import load_config
    from mitotype.training.inputs import load_figures
    from mitotype.training.trainer import Trainer

    overrides = [f"seed={seed}", f"data.path={shared_data_dir() / 'amibr'}"]
    if epochs:
        overrides.append(f"optim.epochs={epochs}")
    config = load_config(preset=recipe, overrides=overrides)
    figures = load_figures(config.data.path, cache_dir=cache)
    split = np.array([r.meta.get("benchmark_split") for r in figures.records])
    train_all, test_idx = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    train_idx, val_idx = validation_split(figures.records, train_all, fraction=config.data.val_fraction, seed=seed)
    start = time.perf_counter()
    result = Trainer(config, figures.records, figures.images, train_idx, val_idx, out, progress=False,
                     log=lambda m: print(f"  [{recipe} seed {seed}] {m}", flush=True)).fit()
    train_s = time.perf_counter() - start
    loaded = load_model_artifact(out)
    y = np.array([figures.records[i].label for i in test_idx])
    p = predict_proba(loaded.model, figures.images[test_idx], batch_size=128)
    tuned = binary_metrics(y, p, loaded.threshold)
    at_half = binary_metrics(y, p, 0.5)
    return {
        "recipe": recipe, "seed": seed, "epochs": config.optim.epochs, "best_epoch": result.best_epoch,
        "threshold": loaded.threshold, "test_balanced_accuracy": tuned["balanced_accuracy"],
        "test_roc_auc": tuned["roc_auc"], "test_sensitivity": tuned["sensitivity"],
        "test_specificity": tuned["specificity"], "test_balanced_accuracy_at_0.5": at_half["balanced_accuracy"],
        "val_balanced_accuracy": result.val_metrics["balanced_accuracy"], "train_seconds": train_s,
        "n_train": len(train_idx), "n_val": len(val_idx), "n_test": len(test_idx),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def summarise(runs: list[dict]) -> dict:
    out = {}
    for recipe in sorted({r["recipe"] for r in runs}):
        ba = [r["test_balanced_accuracy"] for r in runs if r["recipe"] == recipe]
        auc = [r["test_roc_auc"] for r in runs if r["recipe"] == recipe]
        out[recipe] = {"n_seeds": len(ba), "balanced_accuracy_mean": float(np.mean(ba)),
                       "balanced_accuracy_sd": float(np.std(ba, ddof=1)) if len(ba) > 1 else None,
                       "balanced_accuracy_range": [float(min(ba)), float(max(ba))],
                       "roc_auc_mean": float(np.mean(auc))}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["plain", "full-cpu"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="override every recipe's epochs (default: the preset's)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mitotype-amibr-recipes"))
    parser.add_argument("--name", default="amibr_recipes", help="results file name")
    parser.add_argument("--one", nargs=2, metavar=("RECIPE", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    cache = args.work / "cache"
    if args.one:
        recipe, seed = args.one[0], int(args.one[1])
        run = one_run(recipe, seed, args.epochs, args.work / f"{recipe}-seed{seed}", cache)
        print("RESULT " + json.dumps(run), flush=True)
        return 0
    path = RESULTS_DIR / f"{args.name}.json"
    runs: list[dict] = json.loads(path.read_text()).get("figures", {}).get("runs", []) if path.is_file() else []
    done = {(r["recipe"], r["seed"]) for r in runs}
    command = "python benchmarks/amibr_recipes.py " + " ".join(sys.argv[1:])
    for seed in args.seeds:
        for recipe in args.recipes:
            if (recipe, seed) in done:
                continue
            cmd = [sys.executable, __file__, "--one", recipe, str(seed), "--work", str(args.work)]
            if args.epochs:
                cmd += ["--epochs", str(args.epochs)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            sys.stdout.write(proc.stdout)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                return proc.returncode
            run = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
            runs.append(run)
            write_result(args.name, command, {"runs": runs, "summary": summarise(runs)},
                         extra={"published_balanced_accuracy": PUBLISHED,
                                "data": "AMi-Br benchmark_split train -> test (826 figures: 642 NMF, 184 AMF)"})
            print(f"{recipe} seed {seed}: test balanced accuracy {run['test_balanced_accuracy']:.4f} "
                  f"(AUC {run['test_roc_auc']:.4f}, at 0.5: {run['test_balanced_accuracy_at_0.5']:.4f}) "
                  f"in {run['train_seconds'] / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
