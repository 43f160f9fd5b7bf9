"""Leave-one-domain-out on real data: the four AMi-Br domains (three MIDOG21 scanners and TUPAC16).

Runs ``mitotype cv`` with a preset (default: every strategy on the ImageNet EfficientNet-Lite0
stand-in) and records per-domain and pooled figures, wall time and machine in
``benchmarks/results/amibr_lodo.json``. The report lands beside the run (``--work``).

    python benchmarks/amibr_lodo.py --preset full-cpu --epochs 6
    python benchmarks/amibr_lodo.py --preset full-cpu --epochs 6 --tta   # the same folds, 8-view TTA
    python benchmarks/amibr_lodo.py --preset full-cpu --set model.input_size=224   # the shipped model's recipe
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_run_options, command_line, run_overrides, run_script, write_result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(parser)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mitotype-amibr-lodo"))
    parser.add_argument("--tta", action="store_true",
                        help="8-view TTA on the held-out figures (at each fold's TTA threshold); folds already "
                             "trained in --work are predicted again, not retrained")
    parser.add_argument("--folds", nargs="+", default=None, metavar="FOLD",
                        help="run only these folds in this order (held-out domain names, e.g. TUPAC16)")
    parser.add_argument("--name", default=None, help="results name (default amibr_lodo, amibr_lodo_tta)")
    args = parser.parse_args()
    args.name = args.name or ("amibr_lodo_tta" if args.tta else "amibr_lodo")

    from mitotype.experiments.cv import run_cv
    from mitotype.training.config import load_config
    from mitotype.training.inputs import load_figures

    config = load_config(preset=args.preset, overrides=run_overrides(args))
    figures = load_figures(config.data.path, cache_dir=args.work / "cache")
    start = time.perf_counter()
    results = run_cv(config, figures, args.work / "cv", scheme="lodo", tta=args.tta, log=print,
                     only=args.folds)
    s = results["summary"]
    figures_out = {
        "per_domain": {name: {k: d.get(k) for k in ("n", "n_pos", "balanced_accuracy", "sensitivity",
                                                    "specificity", "roc_auc", "ci")}
                       for name, d in s["per_domain"].items()},
        "domain_mean_balanced_accuracy": s["domain_mean"], "domain_sd_balanced_accuracy": s["domain_std"],
        "pooled": {k: s["pooled"].get(k) for k in ("balanced_accuracy", "sensitivity", "specificity",
                                                   "roc_auc", "pr_auc", "ece")},
        "pooled_ci": s.get("pooled_ci"), "folds": results["folds"],
        "wall_seconds": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    command = command_line()
    write_result(args.name, command, figures_out,
                 extra={"preset": args.preset, "epochs": config.optim.epochs,
                        "input_size": config.model.input_size, "seed": args.seed, "tta": args.tta,
                        "paper_lodo_10_domains": "0.851 ± 0.037 (H-optimus-0 + LoRA, MIDOG 2025 train set)"})
    spread = f" ± {s['domain_std']:.3f}" if s.get("domain_std") is not None else ""  # one fold (--folds): no sd
    print(f"mean{' ± sd' if spread else ''} over domains {s['domain_mean']:.3f}{spread}; pooled "
          f"{s['pooled']['balanced_accuracy']:.3f}; report {args.work / 'cv' / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
