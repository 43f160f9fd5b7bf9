"""``mitotype holdout``: recipes and seeds trained on one split of a dataset and scored on another."""

from __future__ import annotations

import argparse
from pathlib import Path

from mitotype.cli.data_options import add_reader_arguments, reader_overrides
from mitotype.cli.extras import needs_training_extra


def run_holdout_command(args: argparse.Namespace) -> int:
    from mitotype.cli.progress import log
    from mitotype.experiments.holdout import HoldoutPlan, run_holdout

    plan = HoldoutPlan(recipes=args.recipes, seeds=args.seeds, ablate=args.ablate, strategies=args.strategies,
                       ablate_seeds=args.ablate_seeds)
    data = args.data[0] if len(args.data) == 1 else args.data
    overrides = [*args.overrides, *reader_overrides(args)]
    results = run_holdout(data, args.out, plan, split_column=args.split_column, train_values=args.train_values,
                          test_values=args.test_values, overrides=overrides, epochs=args.epochs,
                          cache=args.cache, log=log)
    print(f"{'recipe':<28} {'seeds':>5} {'test bal.acc':>13} {'± sd':>6} {'TTA':>7} {'AUC':>6}")
    for recipe, s in results["summary"].items():
        sd = s.get("balanced_accuracy_sd")
        print(f"{recipe[:28]:<28} {s['n_seeds']:>5} {s['balanced_accuracy_mean']:>13.4f} "
              f"{'' if sd is None else f'{sd:.4f}':>6} {s.get('balanced_accuracy_tta_mean', float('nan')):>7.4f} "
              f"{s['roc_auc_mean']:>6.4f}")
    for recipe, e in results["seed_ensembles"].items():
        print(f"seed ensemble {recipe}: balanced accuracy {e['balanced_accuracy']:.4f}, "
              f"TTA {e['balanced_accuracy_tta']:.4f}")
    print(f"results: {Path(args.out) / 'holdout.json'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "holdout",
        help="train recipes x seeds on one split of a dataset, score the held-out split",
        description="The hold-out experiment: for each recipe (a preset, '<preset>-no_<strategy>' or "
        "'<recipe>+last') and seed, train on the rows whose --split-column is one of --train-values (a slide-grouped "
        "validation part picks the epoch and thresholds), score the --test-values rows single-view and with TTA; "
        "then seed means, seed ensembles and the seed-paired ablation. Finished runs in --out are kept.",
    )
    p.add_argument("--data", required=True, action="append", metavar="PATH",
                   help="dataset folder or file (any reader); repeat to train on several datasets at once")
    add_reader_arguments(p, config=True)
    p.add_argument("--out", required=True, type=Path, help="work folder: one sub-folder per run, holdout.json")
    p.add_argument("--split-column", default="benchmark_split", help="metadata field that splits the records")
    p.add_argument("--train-values", nargs="+", default=["train"], help="its values that train (default: train)")
    p.add_argument("--test-values", nargs="+", default=["test"], help="its values held out (default: test)")
    p.add_argument("--recipes", nargs="+", default=None, help="default: plain full-cpu (none with --ablate)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--ablate", metavar="PRESET", help="also run PRESET minus each strategy (and PRESET)")
    p.add_argument("--strategies", nargs="+", default=None, help="with --ablate: which strategies to switch off")
    p.add_argument("--ablate-seeds", nargs="+", type=int, default=None, help="seeds of the ablation runs")
    p.add_argument("--epochs", type=int, help="override every recipe's epochs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run (repeatable)")
    p.add_argument("--cache", type=Path, default=None, help="patch store folder (default: <out>/cache)")
    p.set_defaults(func=run_holdout_command)
    needs_training_extra(p)
