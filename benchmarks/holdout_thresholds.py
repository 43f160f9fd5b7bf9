"""Do the threshold rules that transfer to unseen scanners cost anything on seen ones?

Reads finished hold-out runs of ``benchmarks/amibr_recipes.py`` or ``mitotype holdout`` (each ``--run`` folder
holds ``config.yaml``, ``model.safetensors`` and ``test_predictions.csv``), scores each run's own validation split
again (single view and 8-view TTA), and puts the threshold rules of :mod:`mitotype.evaluation.thresholds` that need no
test labels, fitted on those validation scores, on the run's test predictions. ``validation`` is the argmax the run
stored (``stored_threshold`` beside it, as a check); ``platt`` is what ``threshold: val-platt`` stores for the same
weights; ``oracle`` is the test labels' own best threshold, a bound and never a choice.

    python benchmarks/holdout_thresholds.py --run /tmp/ship/full-cpu-seed0 --name holdout_thresholds_224
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, run_script, write_result

RULES = ("validation", "platt", "robust", "calibrated-0.5", "oracle")


def _test_scores(run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and single-view and TTA scores of a run's test predictions (this version's file or an earlier one's)."""
    from mitotype.evaluation.predictions import read_predictions

    table = read_predictions(run / "test_predictions.csv")
    single, tta = table.view(tta=False), table.view(tta=True)
    if single.keys() != tta.keys():
        raise SystemExit(f"{run}: its single-view and TTA test predictions are not over the same figures")
    return single.labels(), single.scores(), tta.scores()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", required=True, help="a hold-out run folder (repeat)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the dataset the runs trained on (default: the path in each run's config.yaml)")
    parser.add_argument("--split-column", default="benchmark_split", help="the field that splits the dataset")
    parser.add_argument("--train-values", nargs="+", default=["train"], metavar="VALUE")
    parser.add_argument("--test-values", nargs="+", default=["test"], metavar="VALUE")
    parser.add_argument("--cache", type=Path, default=None, help="patch cache folder (default: none)")
    parser.add_argument("--name", default="holdout_thresholds")
    parser.add_argument("--results-dir", type=Path, default=None, help="default benchmarks/results")
    args = parser.parse_args()

    from mitotype.evaluation.metrics import best_threshold, binary_metrics
    from mitotype.evaluation.thresholds import platt_threshold, robust_threshold
    from mitotype.experiments.holdout import holdout_split
    from mitotype.models.artifact import load_model_artifact
    from mitotype.models.predict import predict_proba
    from mitotype.training.config import load_config

    start = time.perf_counter()
    runs: dict[str, Any] = {}
    for run in args.run:
        overrides = ["optim.device=cpu", *([f"data.path={args.data}"] if args.data else [])]
        config = load_config(run / "config.yaml", overrides=overrides)
        split = holdout_split(config, args.cache, config.seed, args.split_column, args.train_values, args.test_values)
        records = split.figures.records
        y_val = np.array([records[i].label for i in split.val_idx])
        loaded = load_model_artifact(run, device="cpu")
        y_test, p_test, p_test_tta = _test_scores(run)
        if len(y_test) != len(split.test_idx):
            raise SystemExit(f"{run}: {len(y_test)} test predictions, but the split has {len(split.test_idx)}")
        domains = np.array([records[i].domain for i in split.val_idx])
        entry: dict[str, Any] = {"n_val": len(y_val)}
        for view, p_test_view in (("single", p_test), ("tta", p_test_tta)):
            p_val = predict_proba(loaded.model, split.figures.images[split.val_idx], tta=view == "tta",
                                  batch_size=config.optim.eval_batch_size, precision=config.optim.precision)
            thresholds = {"validation": best_threshold(y_val, p_val), "platt": platt_threshold(y_val, p_val),
                          "robust": robust_threshold(y_val, p_val, domains), "calibrated-0.5": 0.5,
                          "oracle": best_threshold(y_test, p_test_view)}  # a bound, never a choice
            stored = loaded.meta.get("threshold_tta" if view == "tta" else "threshold")
            entry[view] = {"stored_threshold": stored}
            for rule, thr in thresholds.items():
                m = binary_metrics(y_test, p_test_view, thr)
                entry[view][rule] = {"threshold": thr, "balanced_accuracy": m["balanced_accuracy"],
                                     "sensitivity": m["sensitivity"], "specificity": m["specificity"]}
                print(f"{run.name} {view:6} {rule:15} thr {thr:.3f} BA {m['balanced_accuracy']:.3f} "
                      f"sens {m['sensitivity']:.3f} spec {m['specificity']:.3f}", flush=True)
        runs[str(run)] = entry
    path = args.results_dir / f"{args.name}.json" if args.results_dir else None
    write_result(args.name, command_line(), {"runs": runs, "rules": list(RULES),
                                             "seconds": time.perf_counter() - start}, path=path)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
