"""Which BatchNorm statistics hold on an unseen scanner: the running ones training collected, or statistics
recomputed over the training figures as weight averaging does (``optim.bn_update_views``: ``clean`` figures, or
``train`` views through the run's image strategies)?

Reads the fold models of a finished ``benchmarks/amibr_lodo.py`` run (``--work``); for every held-out domain the
same trained weights are scored three ways, each at its own validation threshold (the one the trainer would
keep). Recomputation uses the trainer's own code path, so it is what SWA and EMA do before every validation.

    python benchmarks/lodo_bn_views.py --work /tmp/lever128/base-s0 --preset full-cpu --epochs 6 --seed 0 \\
        --name lodo_bn_views_128_e6_s0
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_run_options, command_line, finished_lodo_folds, run_overrides, run_script, write_result

WAYS = ("running", "clean", "train")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="the --work folder of benchmarks/amibr_lodo.py")
    add_run_options(parser)
    parser.add_argument("--name", default="lodo_bn_views")
    parser.add_argument("--results-dir", type=Path, default=None, help="default benchmarks/results")
    args = parser.parse_args()

    from mitotype.evaluation.metrics import best_threshold, binary_metrics
    from mitotype.evaluation.splits import validation_split
    from mitotype.experiments.cv import fold_model_dir, make_folds
    from mitotype.models.artifact import load_model_artifact
    from mitotype.models.predict import raw_probabilities
    from mitotype.training.config import load_config
    from mitotype.training.inputs import load_data_figures
    from mitotype.training.trainer import Trainer

    overrides = ["optim.device=cpu", *run_overrides(args)]
    configs = {way: load_config(preset=args.preset, overrides=[*overrides, f"optim.bn_update_views={way}"])
               for way in ("clean", "train")}
    config = configs["train"]
    finished_lodo_folds(args.work)  # before the data is read
    figures = load_data_figures(config.data, cache_dir=args.work / "cache")
    records = figures.records
    labels = np.array([r.label for r in records])
    start = time.perf_counter()
    per_domain: dict[str, Any] = {}
    for fold in make_folds(records, "lodo", 5, config.seed):
        model_dir = fold_model_dir(args.work / "cv", fold.name)
        if not (model_dir.parent / "predictions.json").is_file():
            print(f"{fold.name}: not finished in {model_dir.parent}, skipped", flush=True)
            continue
        train_idx, val_idx = validation_split(records, fold.train_idx, fraction=config.data.val_fraction,
                                              seed=config.seed)
        test_idx = np.asarray(fold.test_idx)
        trained = load_model_artifact(model_dir, device="cpu").model.eval()
        rows = {}
        for way in WAYS:
            model = copy.deepcopy(trained)
            if way != "running":
                with tempfile.TemporaryDirectory() as tmp:
                    trainer = Trainer(configs[way], records, figures.images, train_idx, val_idx, Path(tmp),
                                      progress=False, log=None)
                    trainer._build()  # the run's strategies, as fit() sets them up
                    trainer._recompute_bn(model)
                model.eval()
            p_val = raw_probabilities(model, figures.images, idx=val_idx, batch_size=config.optim.eval_batch_size)
            p_test = raw_probabilities(model, figures.images, idx=test_idx, batch_size=config.optim.eval_batch_size)
            threshold = best_threshold(labels[val_idx], p_val)
            m = binary_metrics(labels[test_idx], p_test, threshold)
            rows[way] = {k: float(m[k]) for k in ("balanced_accuracy", "sensitivity", "specificity", "roc_auc")} | {
                "threshold": float(threshold),
                "validation_balanced_accuracy": float(binary_metrics(labels[val_idx], p_val,
                                                                     threshold)["balanced_accuracy"])}
            print(f"{fold.name} {way}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[way].items()), flush=True)
        per_domain[fold.name.removeprefix("lodo-")] = rows
    if not per_domain:
        print(f"no finished fold in {args.work / 'cv'}", file=sys.stderr)
        return 1
    summary = {way: {f"mean_domain_{k}": float(np.mean([d[way][k] for d in per_domain.values()]))
                     for k in ("balanced_accuracy", "sensitivity", "roc_auc")}
               | {"min_domain_balanced_accuracy": min(d[way]["balanced_accuracy"] for d in per_domain.values())}
               for way in WAYS}
    for way, s in summary.items():
        print(f"{way:>8}: " + ", ".join(f"{k} {v:.3f}" for k, v in s.items()))
    command = command_line()
    path = args.results_dir / f"{args.name}.json" if args.results_dir else None
    write_result(args.name, command, {"summary": summary, "per_domain": per_domain,
                                      "wall_seconds": time.perf_counter() - start},
                 extra={"preset": args.preset, "epochs": config.optim.epochs, "seed": args.seed,
                        "overrides": args.overrides, "work": str(args.work)}, path=path)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
