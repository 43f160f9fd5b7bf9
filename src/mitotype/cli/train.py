"""``mitotype train``: train one classifier with a validation split of slides held out."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mitotype.cli.data_options import add_reader_arguments, reader_overrides
from mitotype.cli.extras import needs_training_extra


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
    parser.add_argument("--data", action="append", default=[], metavar="PATH",
                        help="dataset folder or file (overrides data.path); repeat to train on several datasets "
                        "at once (--data A --data B: data.sources, each dataset keeping its own domains and "
                        "slides)")
    add_reader_arguments(parser, config=True)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


def data_overrides(args: argparse.Namespace) -> list[str]:
    """``--data`` and the reader flags as ``data.*`` overrides (values as JSON, which the parser reads as YAML).

    One ``--data``: ``data.path`` (and no ``data.sources``); several: ``data.sources`` with one path each
    (and no ``data.path``); the reader flags set the ``data`` defaults every source inherits.
    """
    overrides = []
    paths = list(args.data or [])
    if len(paths) == 1:
        overrides += [f"data.path={json.dumps(paths[0])}", "data.sources=[]"]
    elif paths:
        overrides += ["data.path=", f"data.sources={json.dumps([{'path': p} for p in paths])}"]
    return overrides + reader_overrides(args)


def config_from_args(args: argparse.Namespace):  # -> TrainConfig
    from mitotype.training.config import load_config

    overrides = [*args.overrides, *data_overrides(args)]
    return load_config(args.config, overrides=overrides, preset=args.preset)


def load_data(config):  # -> Figures
    from mitotype.training.inputs import load_data_figures, reading_notes

    figures = load_data_figures(config.data)
    for note in reading_notes(figures):
        print(f"note: {note}")
    if config.data.sources:
        counts: dict[str, int] = {}
        for record in figures.records:
            counts[record.dataset] = counts.get(record.dataset, 0) + 1
        print(f"{len(counts)} datasets: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
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
    needs_training_extra(p)
