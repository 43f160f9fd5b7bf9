"""``mitotype cv``: cross-validation (leave-one-domain-out or slide-grouped k-fold) with a report; the fold
options ``ablate`` shares."""

from __future__ import annotations

import argparse
from pathlib import Path

from mitotype.cli.extras import needs_training_extra
from mitotype.cli.options import positive_int
from mitotype.cli.progress import log, progress_bars
from mitotype.cli.summary import print_summary
from mitotype.cli.train import add_config_arguments, config_from_args, load_data
from mitotype.errors import ConfigError


def run_cv_command(args: argparse.Namespace) -> int:
    from mitotype.experiments.cv import run_cv
    from mitotype.paths import check_folder_creatable

    k = fold_count(args)
    config = config_from_args(args)
    check_folder_creatable(args.out)  # created once the folds are known: a refused --folds leaves nothing
    figures = load_data(config)
    results = run_cv(config, figures, args.out, scheme=args.scheme, k=k, resume=not args.restart,
                     tta=args.tta, progress=progress_bars(not args.no_progress), log=log, only=args.folds)
    print_summary(results)
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0


def fold_count(args: argparse.Namespace) -> int:
    """``--k`` for k-fold (5 when not given); refused with leave-one-domain-out, whose folds are the domains."""
    if args.scheme == "lodo" and args.k is not None:
        raise ConfigError("--k applies to --scheme kfold; leave-one-domain-out has one fold per domain")
    return 5 if args.k is None else args.k


def add_cv_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheme", choices=["lodo", "kfold"], default="lodo",
                   help="leave-one-domain-out (default) or stratified k-fold grouped by slide")
    p.add_argument("--k", type=positive_int, default=None, help="folds for --scheme kfold (default 5)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cv", help="cross-validate: leave-one-domain-out or slide-grouped k-fold, with a report",
        description="Train one model per fold; the held-out domain never reaches model selection or "
        "the threshold. Writes results.json, predictions.csv (out-of-fold) and report.html. "
        "Finished folds are reused when the command is run again.")
    add_config_arguments(p)
    add_cv_options(p)
    p.add_argument("--folds", nargs="+", metavar="FOLD",
                   help="run only these folds, in this order (held-out domain or fold names, e.g. TUPAC16): to "
                   "spread folds over machines; a later run without it reuses them")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--tta", action="store_true", help="dihedral test-time augmentation on held-out figures")
    p.add_argument("--restart", action="store_true", help="retrain finished folds instead of reusing them")
    p.set_defaults(func=run_cv_command)
    needs_training_extra(p)
