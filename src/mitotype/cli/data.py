"""``mitotype data``: inspect a dataset (counts per domain, votes, every problem) and write synthetic data."""

from __future__ import annotations

import argparse
import json
import sys

from mitotype.errors import ConfigError

FORMAT_CHOICES = ("auto", "amibr", "midog25", "votes-csv", "folder", "csv", "coords")
DOMAIN_CHOICES = ("scanner", "tumor", "lab", "species", "source")


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
    ins.add_argument("--format", dest="fmt", default="auto", choices=FORMAT_CHOICES,
                     help="dataset layout (default: detected)")
    ins.add_argument("--domain", nargs="+", metavar="FIELD", choices=DOMAIN_CHOICES,
                     help="metadata field(s) forming the domain (default: the format's own)")
    ins.add_argument("--on-error", default="fail", choices=("fail", "skip"),
                     help="stop at the first error (fail) or drop the record and report it (skip)")
    ins.add_argument("--images-dir", help="folder holding the images (formats with a label CSV)")
    ins.add_argument("--check", default="full", choices=("full", "header", "exists", "none"),
                     help="image check: decode every pixel (full), headers, existence, or labels only (none)")
    ins.add_argument("--size-policy", default="center-crop", choices=("center-crop", "resize", "reject"),
                     help="patches that are not 128x128: centre-crop/black-pad, resize, or reject")
    ins.add_argument("--column", action="append", default=[], metavar="ROLE=COLUMN",
                     help="column mapping for --format csv/coords/votes-csv (roles: image, label, votes "
                     "(comma-separated), group, x, y, uid, domain, scanner, tumor, lab, species, source)")
    ins.add_argument("--label", action="append", default=[], metavar="VALUE=CLASS",
                     help="label value mapping, CLASS normal/atypical (e.g. --label Mitosis=normal)")
    ins.add_argument("--meta-csv",
                     help="metadata CSV for --format folder (file name -> group, domain fields)")
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


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def cmd_inspect(args: argparse.Namespace) -> int:
    from mitotype.data.inspect import inspect_dataset

    options: dict[str, object] = {"check": args.check, "size_policy": args.size_policy}
    if args.images_dir:
        options["images_dir"] = args.images_dir
    if args.column:
        options["columns"] = _pairs(args.column, "--column")
    if args.label:
        options["labels"] = _pairs(args.label, "--label")
    if args.meta_csv:
        options["meta_csv"] = args.meta_csv
    report = inspect_dataset(args.path, fmt=args.fmt, domain=args.domain, on_error=args.on_error, **options)
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
