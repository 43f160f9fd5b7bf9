"""Calibrate a hold-out model on its own validation slides and measure it on the test split: the shipped model's
p(atypical) made a probability.

For a model trained by ``mitotype holdout`` / ``amibr_recipes.py`` (the shipped model is one: its metadata holds
the run's configuration and seed), the validation split is rebuilt exactly as training built it, the model's raw
scores are taken there (one view and 8-view TTA, as ``mitotype predict`` runs it), a Platt map is fitted to each,
and both are measured on the test split: expected calibration error before and after, overall and per domain, the
reliability bins, and that no decision changed. ``--write`` stores the maps in the model folder (its tensors and
ONNX graph unchanged), which is how the shipped model got its calibration.

    python benchmarks/calibrate_shipped.py --name calibration_shipped --write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, run_script, shared_data_dir, write_result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a hold-out model folder (default: the shipped one)")
    parser.add_argument("--data", type=Path, default=None, help="its dataset (default: AMi-Br in the shared data)")
    parser.add_argument("--split-column", default="benchmark_split")
    parser.add_argument("--cache", type=Path, default=None, help="patch cache folder (default: none)")
    parser.add_argument("--write", action="store_true", help="store the fitted maps in the model folder")
    parser.add_argument("--name", default="calibration_shipped")
    parser.add_argument("--results-dir", type=Path, default=None, help="default benchmarks/results")
    args = parser.parse_args()

    from mitotype.evaluation.calibration import calibration_by_domain, fit_calibration
    from mitotype.evaluation.metrics import expected_calibration_error
    from mitotype.experiments.holdout import holdout_split
    from mitotype.models.inference import load_predictor
    from mitotype.models.metadata import read_meta_fields, threshold_of, write_calibration
    from mitotype.models.shipped import get_shipped_model
    from mitotype.settings import from_dict
    from mitotype.training.config import TrainConfig

    model = args.model or get_shipped_model().folder
    meta = read_meta_fields(model)
    config = from_dict(TrainConfig, meta["config"], "config")
    config.data.path = str(args.data or shared_data_dir() / "amibr")
    start = time.perf_counter()
    split = holdout_split(config, args.cache, config.seed, split_column=args.split_column)
    labels = np.array([r.label for r in split.figures.records])
    domains = np.array([r.domain for r in split.figures.records])
    predictor = load_predictor([model], device="cpu")
    figures: dict[str, Any] = {"model": str(model), "engine": type(predictor).__name__, "n_val": len(split.val_idx),
                               "n_test": len(split.test_idx), "views": {}}
    maps = {}
    for view, tta in (("single", False), ("tta", True)):
        p = {part: predictor.predict(split.figures.images[idx], tta=tta, calibrated=False)
             for part, idx in (("val", split.val_idx), ("test", split.test_idx))}
        y = {"val": labels[split.val_idx], "test": labels[split.test_idx]}
        cal = fit_calibration(y["val"], p["val"])
        if cal is None:
            raise SystemExit(f"error: {model}: the {view} scores cannot be calibrated on {len(y['val'])} figures")
        maps[view] = cal
        t_raw = threshold_of(meta, tta)
        q_test = cal.apply(p["test"])
        figures["views"][view] = {
            "calibration": cal.to_dict(),
            "threshold_raw": t_raw, "threshold_calibrated": cal.threshold(t_raw),
            "decisions_changed": int(np.sum((p["test"] >= t_raw) != (q_test >= cal.threshold(t_raw)))),
            "ece_val_raw": expected_calibration_error(y["val"], p["val"]),
            "ece_val_calibrated": expected_calibration_error(y["val"], cal.apply(p["val"])),
            "ece_test_raw": expected_calibration_error(y["test"], p["test"]),
            "ece_test_calibrated": expected_calibration_error(y["test"], q_test),
            "test_raw": calibration_by_domain(y["test"], p["test"], domains[split.test_idx]),
            "test_calibrated": calibration_by_domain(y["test"], q_test, domains[split.test_idx]),
        }
        v = figures["views"][view]
        print(f"{view}: ECE test {v['ece_test_raw']:.3f} -> {v['ece_test_calibrated']:.3f} (validation "
              f"{v['ece_val_raw']:.3f} -> {v['ece_val_calibrated']:.3f}); threshold {t_raw:.4f} -> "
              f"{v['threshold_calibrated']:.4f}; decisions changed: {v['decisions_changed']}", flush=True)
    if args.write:
        write_calibration(model, maps)
        print(f"calibration written to {model}")
    figures["wall_seconds"] = time.perf_counter() - start
    write_result(args.name, command_line(), figures, extra={"written": args.write},
                 path=args.results_dir / f"{args.name}.json" if args.results_dir else None)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
