"""``mitotype data``: inspect a dataset (counts per domain, votes, every problem) and write synthetic data."""

from __future__ import annotations

import argparse
import json
import sys

from mitotype.cli.data_options import add_reader_arguments, reader_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect datasets, write a synthetic dataset",
                                   description="Inspect datasets and write a synthetic dataset.")
    sub = parser.add_subparsers(dest="data_command", metavar="<data-command>")
    parser.set_defaults(func=lambda args: _help(parser))

    ins = sub.add_parser(
        "inspect", help="counts per domain, the vote histogram and every problem found",
        description="Read a dataset and print NMF/AMF counts per domain, the vote histogram and every "
        "problem found (errors drop a record under --on-error skip; warnings keep it). Exit status: 0 "
        "without errors, 1 when errors were found under --on-error skip, 2 when reading stopped.")
    ins.add_argument("path", help="dataset folder or label file")
    add_reader_arguments(ins)
    ins.add_argument("--check", default="full", choices=("full", "header", "exists", "none"),
                     help="image check: decode every pixel (full), headers, existence, or labels only (none)")
    ins.add_argument("--max-problems", type=int, default=None, metavar="N",
                     help="list at most N problems (default: all; the counts by kind are always complete)")
    ins.add_argument("--json", action="store_true", help="print the report as JSON")
    ins.set_defaults(func=cmd_inspect)

    syn = sub.add_parser("synth", help="write a synthetic multi-domain dataset (midog25 layout)",
                         description="Write a procedurally drawn, multi-domain dataset of normal and "
                         "atypical figures in the midog25 layout (CSV + images/), deterministic by seed.")
    syn.add_argument("--out", required=True, help="output folder")
    syn.add_argument("--n-per-domain", type=int, default=150, metavar="N")
    syn.add_argument("--domains", type=int, default=4, metavar="D")
    syn.add_argument("--atypical-fraction", type=float, default=0.25, metavar="F")
    syn.add_argument("--seed", type=int, default=0, metavar="S")
    syn.set_defaults(func=cmd_synth)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from mitotype.data.inspect import inspect_dataset

    options = {**reader_options(args), "check": args.check}
    report = inspect_dataset(args.path, fmt=args.data_format, domain=args.domain, on_error=args.on_error,
                             **options)
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        limit = None if not args.max_problems else args.max_problems
        print(report.format_text(max_problems=limit))
    return 1 if report.errors else 0


def cmd_synth(args: argparse.Namespace) -> int:
    from mitotype.data.readers import read_dataset
    from mitotype.data.synth import write_synthetic

    out = write_synthetic(args.out, n_per_domain=args.n_per_domain, domains=args.domains,
                          atypical_fraction=args.atypical_fraction, seed=args.seed)
    result = read_dataset(out, fmt="midog25", check="exists")
    atypical = sum(r.label for r in result.records)
    print(f"wrote {len(result.records)} figures ({len(result.records) - atypical} NMF / {atypical} AMF) in "
          f"{args.domains} domain(s) to {out} (synthetic_midog25.csv + images/)")
    return 0
