"""Nested leave-one-domain-out thresholds: does a threshold learnt from the training domains' own unseen-domain
behaviour transfer better than the validation one?

For every finished fold of a ``benchmarks/amibr_lodo.py`` run (``--outer``: its ``--work`` folder), the
training domains go through their own leave-one-domain-out with the same recipe (one more training per
training domain, in ``--work``). Their out-of-domain scores give the nested rules of
``mitotype.evaluation.thresholds.nested_thresholds``, which are applied to the outer model's held-out scores
beside its own validation threshold and the held-out labels' best one (``oracle``, an upper bound, never a
choice). The held-out domain is never trained on, validated on or looked at by any rule.

    python benchmarks/lodo_nested.py --outer /tmp/lever128/base-s0 --preset full-cpu --epochs 6 --seed 0 \\
        --work /tmp/nested128/s0 --name lodo_nested_128_e6_s0

Inner runs resume where they stopped (``run_cv``), so the script can be stopped and restarted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_run_options, command_line, finished_lodo_folds, run_overrides, run_script, write_result

RULES = ("validation", "nested-pooled", "nested-robust", "nested-shift", "oracle")


def fold_rules(outer_rows: list[dict[str, Any]], inner_rows: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Every rule's threshold and held-out metrics for one outer fold.

    ``outer_rows``: the outer model's prediction rows for its held-out domain (``run_cv``'s
    ``predictions.json``); ``inner_rows``: the rows of each inner fold (one per training domain).
    """
    from mitotype.evaluation.metrics import best_threshold, binary_metrics
    from mitotype.evaluation.thresholds import nested_thresholds

    y = np.array([r["label"] for r in outer_rows])
    p = np.array([r["p_atypical"] for r in outer_rows], dtype=np.float64)
    t_val = float(outer_rows[0]["threshold"])
    inner = [(np.array([r["label"] for r in rows]), np.array([r["p_atypical"] for r in rows], dtype=np.float64),
              float(rows[0]["threshold"])) for rows in inner_rows]
    names = [rows[0]["domain"] for rows in inner_rows]
    thresholds = {"validation": t_val, **nested_thresholds(inner, t_val, domains=names),
                  "oracle": best_threshold(y, p)}
    rules = {}
    for rule in RULES:
        m = binary_metrics(y, p, thresholds[rule])
        rules[rule] = {k: float(m[k]) for k in ("balanced_accuracy", "sensitivity", "specificity")} | {
            "threshold": thresholds[rule]}
    inner_summary = {name: {"validation_threshold": t, "best_threshold": float(best_threshold(yi, pi)),
                            "n": len(yi), "n_pos": int(yi.sum())}
                     for name, (yi, pi, t) in zip(names, inner)}
    return {"domain": outer_rows[0]["domain"], "n": len(y), "n_pos": int(y.sum()), "rules": rules,
            "inner": inner_summary, "y": y.tolist(), "p": p.tolist()}


def summarise(per_fold: dict[str, Any]) -> dict[str, Any]:
    """Per rule: pooled balanced accuracy, sensitivity and specificity (decisions pooled over the held-out
    domains, each at its own fold's threshold), and the worst domain's balanced accuracy and sensitivity."""
    out = {}
    for rule in RULES:
        y = np.concatenate([np.asarray(f["y"]) for f in per_fold.values()])
        decide = np.concatenate([np.asarray(f["p"]) >= f["rules"][rule]["threshold"] for f in per_fold.values()])
        sens, spec = float(decide[y == 1].mean()), float((~decide[y == 0]).mean())
        rows = [f["rules"][rule] for f in per_fold.values()]
        out[rule] = {"pooled_balanced_accuracy": (sens + spec) / 2, "pooled_sensitivity": sens,
                     "pooled_specificity": spec,
                     "mean_domain_balanced_accuracy": float(np.mean([r["balanced_accuracy"] for r in rows])),
                     "min_domain_balanced_accuracy": min(r["balanced_accuracy"] for r in rows),
                     "min_domain_sensitivity": min(r["sensitivity"] for r in rows)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outer", type=Path, required=True, help="the --work folder of benchmarks/amibr_lodo.py")
    parser.add_argument("--work", type=Path, required=True, help="where the inner runs go")
    add_run_options(parser)
    parser.add_argument("--folds", nargs="+", default=None, metavar="FOLD",
                        help="only these outer folds, in this order (held-out domain names)")
    parser.add_argument("--name", default="lodo_nested")
    parser.add_argument("--results-dir", type=Path, default=None, help="default benchmarks/results")
    args = parser.parse_args()

    from mitotype.experiments.cv import fold_model_dir, make_folds, run_cv, select_folds
    from mitotype.training.config import load_config
    from mitotype.training.inputs import Figures, load_data_figures

    config = load_config(preset=args.preset, overrides=run_overrides(args))
    finished_lodo_folds(args.outer)  # before the data is read
    figures = load_data_figures(config.data, cache_dir=args.outer / "cache")
    records = figures.records
    start = time.perf_counter()
    per_fold: dict[str, Any] = {}
    for fold in select_folds(make_folds(records, "lodo", 5, config.seed), args.folds):
        outer_done = fold_model_dir(args.outer / "cv", fold.name).parent / "predictions.json"
        if not outer_done.is_file():
            print(f"{fold.name}: not finished in {outer_done.parent}, skipped", flush=True)
            continue
        train_idx = np.asarray(fold.train_idx)
        inner_figures = Figures(records=[records[i] for i in train_idx], images=figures.images[train_idx])
        inner_dir = args.work / fold_model_dir("", fold.name).parent.name
        print(f"{fold.name}: nested leave-one-domain-out over its {len(train_idx)} training figures", flush=True)
        run_cv(config, inner_figures, inner_dir, scheme="lodo", log=print, report=False)
        inner_rows = [json.loads(f.read_text()) for f in sorted((inner_dir / "folds").glob("*/predictions.json"))]
        per_fold[fold.name] = fold_rules(json.loads(outer_done.read_text()), inner_rows)
        rules = per_fold[fold.name]["rules"]
        print(f"{fold.name}: " + ", ".join(f"{r} {v['balanced_accuracy']:.3f}/{v['sensitivity']:.2f} "
                                           f"(t {v['threshold']:.3f})" for r, v in rules.items()), flush=True)
    if not per_fold:
        print(f"no finished outer fold in {args.outer / 'cv'}", file=sys.stderr)
        return 1
    summary = summarise(per_fold)
    for rule, s in summary.items():
        print(f"{rule:>14}: pooled {s['pooled_balanced_accuracy']:.3f} (sens {s['pooled_sensitivity']:.2f}), "
              f"worst domain {s['min_domain_balanced_accuracy']:.3f}, worst sens {s['min_domain_sensitivity']:.2f}")
    compact = {name: {k: v for k, v in f.items() if k not in ("y", "p")} for name, f in per_fold.items()}
    command = command_line()
    path = args.results_dir / f"{args.name}.json" if args.results_dir else None
    write_result(args.name, command, {"summary": summary, "per_fold": compact,
                                      "wall_seconds": time.perf_counter() - start},
                 extra={"preset": args.preset, "epochs": config.optim.epochs, "input_size": config.model.input_size,
                        "seed": args.seed, "overrides": args.overrides, "outer": str(args.outer)}, path=path)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
