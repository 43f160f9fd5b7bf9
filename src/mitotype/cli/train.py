"""``mitotype train``: train one classifier with a validation split of slides held out."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that builds a training configuration."""
    parser.add_argument("--config", type=Path, help="YAML configuration file")
    parser.add_argument("--preset", help="named preset under mitotype/configs (e.g. full, plain, demo)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set optim.epochs=5 --set strategies.mixup.enabled=false",
    )
    parser.add_argument("--data", help="dataset folder (overrides data.path)")
    parser.add_argument("--format", dest="data_format", help="reader name (overrides data.format)")
    parser.add_argument("--domain", nargs="+", help="metadata fields forming the domain (overrides data.domain)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


def config_from_args(args: argparse.Namespace):  # -> TrainConfig
    from mitotype.training.config import load_config

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={args.data}")
    if getattr(args, "data_format", None):
        overrides.append(f"data.format={args.data_format}")
    if getattr(args, "domain", None):
        overrides.append(f"data.domain=[{', '.join(args.domain)}]")
    return load_config(args.config, overrides=overrides, preset=args.preset)


def load_data(config):  # -> Figures
    from mitotype.training.inputs import adaptation_note, load_figures

    d = config.data
    figures = load_figures(d.path, fmt=d.format, domain=d.domain, images_dir=d.images_dir,
                           on_error=d.on_error, include=d.include, cache_dir=d.cache_dir)
    note = adaptation_note(figures)
    if note:
        print(f"note: {note}")
    return figures


def run_train(args: argparse.Namespace) -> int:
    import numpy as np

    from mitotype.cli.progress import log, progress_bars
    from mitotype.evaluation.splits import validation_split
    from mitotype.runs import prepare_train_folder
    from mitotype.training.trainer import Trainer

    config = config_from_args(args)
    note = prepare_train_folder(args.out, resume=args.resume, overwrite=args.overwrite)
    if note:
        print(f"note: {note}")
    figures = load_data(config)
    all_idx = np.arange(len(figures.records))
    train_idx, val_idx = validation_split(figures.records, all_idx, fraction=config.data.val_fraction,
                                          seed=config.seed)
    print(f"{len(figures.records)} figures: {len(train_idx)} train / {len(val_idx)} validation "
          f"(slides never on both sides)")
    trainer = Trainer(config, figures.records, figures.images, train_idx, val_idx, args.out,
                      progress=progress_bars(not args.no_progress), log=log)
    result = trainer.fit(resume=args.resume)
    m = result.val_metrics
    print(f"best epoch {result.best_epoch}: validation balanced accuracy {m['balanced_accuracy']:.4f}, "
          f"ROC AUC {m.get('roc_auc') or float('nan'):.4f}, threshold {result.threshold:.3f}")
    print(f"model written to {Path(args.out) / 'model.safetensors'} ({result.wall_seconds:.0f} s)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a classifier (all strategies switchable in one YAML config)",
        description="Train one classifier. A slide-grouped validation split of the data selects the "
        "epoch and the decision threshold (maximising balanced accuracy); both are stored with the "
        "model. Multi-GPU: torchrun --nproc_per_node N -m mitotype.cli.main train ...",
    )
    add_config_arguments(p)
    p.add_argument("--out", required=True, type=Path, help="run folder (model, config, metrics)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it, an existing run is refused)")
    p.set_defaults(func=run_train)
