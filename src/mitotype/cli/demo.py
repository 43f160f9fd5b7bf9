"""``mitotype demo``: the whole job on a fresh machine: synthetic data, leave-one-domain-out cross-validation,
report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mitotype.cli.extras import needs_training_extra
from mitotype.cli.progress import log, progress_bars
from mitotype.cli.summary import print_summary


def run_demo_command(args: argparse.Namespace) -> int:
    from mitotype.data.synth import write_synthetic
    from mitotype.experiments.cv import run_cv
    from mitotype.training.config import load_config
    from mitotype.training.inputs import load_figures

    start = time.perf_counter()
    out = Path(args.out)
    data_dir = out / "synthetic-data"
    print(f"1/3 drawing the synthetic multi-domain dataset into {data_dir}")
    write_synthetic(data_dir, n_per_domain=args.n_per_domain, seed=args.seed)
    config = load_config(preset="demo", overrides=[f"data.path={data_dir}", f"seed={args.seed}", *args.overrides])
    figures = load_figures(data_dir, fmt=config.data.format, domain=config.data.domain,
                           cache_dir=out / "cache")
    print(f"2/3 leave-one-domain-out cross-validation: {len(figures.records)} figures, backbone "
          f"{config.model.backbone}, all strategies on")
    results = run_cv(config, figures, out / "cv", scheme="lodo", resume=True,
                     progress=progress_bars(not args.no_progress), log=log)
    print("3/3 summary")
    print_summary(results)
    print(f"report: {out / 'cv' / 'report.html'}  ({time.perf_counter() - start:.0f} s in all)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="the whole job on a fresh machine: synthetic data, LODO cross-validation, report",
        description="Draws a synthetic 4-domain dataset, runs leave-one-domain-out cross-validation with "
        "a small ImageNet-pretrained backbone and every strategy on, and writes the HTML report "
        "(a few minutes on 2 CPU cores).")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out)")
    p.add_argument("--n-per-domain", type=int, default=150, help="figures per synthetic domain")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of the demo preset")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_demo_command)
    needs_training_extra(p)
