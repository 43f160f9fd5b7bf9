"""``mitotype ablate``: cross-validation with every strategy, then with each one switched off."""

from __future__ import annotations

import argparse
from pathlib import Path

from mitotype.cli.cv import add_cv_options, fold_count
from mitotype.cli.extras import needs_training_extra
from mitotype.cli.progress import log, progress_bars
from mitotype.cli.summary import metric_text
from mitotype.cli.train import add_config_arguments, config_from_args, load_data


def run_ablate_command(args: argparse.Namespace) -> int:
    from mitotype.experiments.cv import run_ablation
    from mitotype.paths import check_folder_creatable

    k = fold_count(args)
    config = config_from_args(args)
    check_folder_creatable(args.out)
    figures = load_data(config)
    table = run_ablation(config, figures, args.out, strategies=args.strategies, scheme=args.scheme, k=k,
                         progress=progress_bars(not args.no_progress), log=log)
    print(f"{'variant':<24} {'pooled bal.acc':>14} {'Δ vs all':>9} {'95% CI':>17}")
    for name, v in table["variants"].items():
        d = v.get("delta_vs_all")
        delta = f"{d['delta']:+.3f}" if d else ""
        ci = f"{d['ci_low']:+.3f}..{d['ci_high']:+.3f}" if d else ""
        print(f"{name:<24} {metric_text(v['pooled']['balanced_accuracy']):>14} {delta:>9} {ci:>17}")
    print(f"table: {Path(args.out) / 'ablation.json'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ablate", help="cross-validate with all strategies, then with each one switched off",
        description="Tabulates the change in pooled balanced accuracy of each strategy switched off, "
        "with 95%% intervals from a paired bootstrap over slides.")
    add_config_arguments(p)
    add_cv_options(p)
    p.add_argument("--strategies", nargs="+", help="only these strategies (default: those on by default or in the "
                                                      "configuration)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(func=run_ablate_command)
    needs_training_extra(p)
