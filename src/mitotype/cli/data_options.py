"""The options that say how to read a dataset, shared by every command that reads one.

``data inspect``, ``predict``, ``evaluate``, ``train``, ``cv`` and ``ablate`` take the same flags, so a
dataset one of them reads, the others read too: the format, a column mapping, label value mapping, an
images folder and a metadata CSV. The training commands map them onto the ``data`` block of the run
configuration (:func:`reader_overrides`), where a flag given overrides the YAML and a flag not given
leaves it alone.
"""

from __future__ import annotations

import argparse
import json

from mitotype.errors import ConfigError

FORMAT_CHOICES = ("auto", "amibr", "midog25", "votes-csv", "folder", "images", "csv", "coords")
DOMAIN_CHOICES = ("scanner", "tumor", "lab", "species", "source")


def add_reader_arguments(parser: argparse.ArgumentParser, config: bool = False) -> None:
    """Add ``--format``, ``--domain``, ``--on-error``, ``--images-dir``, ``--column``, ``--label``,
    ``--meta-csv`` and ``--size-policy`` to ``parser``.

    ``config``: for commands that read a run configuration; then no flag has a default (a flag not given
    leaves the configuration's value) and :func:`reader_overrides` turns them into ``data.*`` overrides.
    """

    def default(value: str) -> str | None:
        return None if config else value

    parser.add_argument("--format", dest="data_format", default=default("auto"), choices=FORMAT_CHOICES,
                        help="dataset layout (default: detected; 'images' = any folder of patches or a .txt "
                        "list of paths, labels optional)")
    parser.add_argument("--domain", nargs="+", metavar="FIELD", choices=DOMAIN_CHOICES,
                        help="metadata field(s) forming the domain (default: the format's own)")
    parser.add_argument("--on-error", default=default("fail"), choices=("fail", "skip"),
                        help="stop at the first bad row or image (fail) or drop it and report it (skip)")
    parser.add_argument("--images-dir", help="folder holding the images (formats with a label CSV)")
    parser.add_argument("--column", action="append", default=[], metavar="ROLE=COLUMN",
                        help="column mapping for --format csv/coords/votes-csv (roles: image, label, votes "
                        "(comma-separated), group, x, y, uid, domain, scanner, tumor, lab, species, source)")
    parser.add_argument("--label", action="append", default=[], metavar="VALUE=CLASS",
                        help="label value mapping, CLASS normal/atypical (e.g. --label Mitosis=normal); for --format "
                        "folder, a class folder's name (--label Atypical_figures=atypical)")
    parser.add_argument("--meta-csv", help="metadata CSV for --format folder (file name -> group, domain fields)")
    parser.add_argument("--size-policy", default=default("center-crop"), choices=("center-crop", "resize", "reject"),
                        help="patches that are not 128x128: centre-crop/black-pad, resize, or reject")


def pairs(items: list[str], flag: str) -> dict[str, str]:
    """``["a=b", ...]`` as ``{"a": "b"}``; a :class:`ConfigError` naming ``flag`` for a malformed item."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def reader_options(args: argparse.Namespace) -> dict[str, object]:
    """The reader options (``read_dataset``'s keyword arguments beyond format and domain) the flags give."""
    options: dict[str, object] = {"size_policy": args.size_policy}
    if args.images_dir:
        options["images_dir"] = args.images_dir
    if args.column:
        options["columns"] = pairs(args.column, "--column")
    if args.label:
        options["labels"] = pairs(args.label, "--label")
    if args.meta_csv:
        options["meta_csv"] = args.meta_csv
    return options


def reader_overrides(args: argparse.Namespace) -> list[str]:
    """The flags given (of :func:`add_reader_arguments` with ``config=True``) as ``data.*`` overrides of
    the run configuration; values are written as JSON, which the YAML override parser reads as is."""
    out = []
    for flag, key in (("data_format", "format"), ("domain", "domain"), ("on_error", "on_error"),
                      ("images_dir", "images_dir"), ("meta_csv", "meta_csv"), ("size_policy", "size_policy")):
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"data.{key}={json.dumps(value)}")
    if args.column:
        out.append(f"data.columns={json.dumps(pairs(args.column, '--column'))}")
    if args.label:
        out.append(f"data.labels={json.dumps(pairs(args.label, '--label'))}")
    return out
