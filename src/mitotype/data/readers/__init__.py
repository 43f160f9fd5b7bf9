"""Dataset readers: every supported layout becomes a :class:`~mitotype.data.problems.ReadResult`.

Formats (auto-detected from the folder or file, in this order):

* ``amibr``: ``AMI-BR.csv`` + ``patches/{normal,atypical}/`` (:mod:`.amibr`)
* ``midog25``: the official MIDOG 2025 Track 2 CSV + ``image_id`` PNGs (:mod:`.midog25`)
* ``votes-csv``: ``Filename, Expert_1..n, Majority`` (AtNorM style) (:mod:`.votes_csv`)
* ``coords``: image, x, y, label of figures on larger images (MIDOG++ style) (:mod:`.coords`)
* ``folder``: one sub-folder per class (:mod:`.folder`)
* ``images``: any folder of patches (any depth), a ``.txt`` list of paths or one patch; labels optional
  (:mod:`.unlabelled`)
* ``csv``: any CSV through a column mapping; detected only as a plain image + label CSV (:mod:`.generic_csv`)

Every reader then checks the images (option ``check``: ``full`` decodes every pixel, the default;
``header``; ``exists``; ``none`` for labels only), reports missing/corrupt files (errors), conversions,
odd sizes and identical images (warnings), and sets each record's domain: the reader's default, or the
given ``domain`` fields through :func:`~mitotype.data.records.assign_domains`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from mitotype.data.patches import DEFAULT_SIZE_POLICY, IMAGE_SUFFIXES, PATCH_SIZE, check_size_policy
from mitotype.data.problems import ProblemLog, ReadResult
from mitotype.data.readers import amibr, coords, folder, generic_csv, midog25, unlabelled, votes_csv
from mitotype.data.readers._common import (
    CHECK_LEVELS,
    check_images,
    check_level,
    check_options,
    csv_problem,
    walk_files,
)
from mitotype.data.records import assign_domains
from mitotype.errors import ConfigError, DataError, printable
from mitotype.paths import refuse_special_file

READERS: dict[str, ModuleType] = {
    "amibr": amibr,
    "midog25": midog25,
    "votes-csv": votes_csv,
    "coords": coords,
    "folder": folder,
    "images": unlabelled,
    "csv": generic_csv,
}
FORMATS: tuple[str, ...] = tuple(READERS)
DETECT_ORDER = ("amibr", "midog25", "votes-csv", "coords", "folder", "csv", "images")

__all__ = ["CHECK_LEVELS", "FORMATS", "detect_format", "read_dataset"]


def detect_format(path: str | Path) -> str:
    """The format of a dataset folder or label file; :class:`DataError` saying what was found if none fits."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{printable(path)}: no such file or folder")
    refuse_special_file(path, "dataset")
    for name in DETECT_ORDER:
        if READERS[name].detect(path):
            return name
    label_files = sorted(path.glob("*.csv")) if path.is_dir() else [path] if path.suffix.lower() == ".csv" else []
    for label_file in label_files:  # a label file no reader could open: say why, not only "cannot tell"
        problem = csv_problem(label_file)
        if problem:
            raise DataError(f"{label_file}: {problem}")
    if path.is_dir():
        seen = sorted(printable(p.name) for p in path.iterdir())[:12]
        scan = ProblemLog("skip")
        if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in walk_files(path, scan)):
            found = f"no image file at any depth; found {seen}" if seen else "the folder is empty"
            broken = scan.problems[0] if scan.problems else None  # e.g. every figure a broken link
            raise DataError(f"no images in {printable(path)} ({found})" + (f"; {broken}" if broken else ""))
        raise DataError(f"{printable(path)}: cannot tell the dataset format (found {seen}); pass fmt/--format, one "
                        f"of {list(FORMATS)}")
    raise DataError(f"{path}: cannot tell the format of this file; pass fmt='csv' with a column mapping "
                    "(CLI: --format csv --column image=... --column label=...)")


def read_dataset(path: str | Path, fmt: str = "auto", domain: Sequence[str] | str | None = None,
                 on_error: str = "fail", labels_optional: bool = False, **options: object) -> ReadResult:
    """Read a dataset into figure records, reporting every problem found.

    ``domain``: metadata fields to build the domain from (e.g. ``["scanner"]``, ``["tumor", "species"]``);
    ``None`` keeps the reader's default. ``labels_optional`` (figures to classify): a label that cannot be
    read leaves the figure unlabelled with a warning instead of an error, and a reader's label columns
    (label, votes, majority) may be missing; without it a missing label column is an error. Mappings without a
    label column give unlabelled figures either way. ``on_error``: ``"fail"`` raises :class:`DataError` at the first
    error (one line naming the file and row); ``"skip"`` drops the record and reports it. Common options:
    ``check`` (``full``/``header``/``exists``/``none``), ``size`` (128), ``size_policy``
    (``center-crop``/``resize``/``reject``), ``workers``; the rest are the format's own (``images_dir``,
    ``columns``, ``labels``, ``class_dirs``, ``meta_csv``, ``dataset``).
    """
    path = Path(path).expanduser()
    log = ProblemLog(on_error, labels_optional=labels_optional)
    if not path.exists():
        raise DataError(f"{printable(path)}: no such file or folder")
    refuse_special_file(path, "dataset")
    if path.is_dir() and not any(path.iterdir()):  # whatever the format, there is nothing to read
        raise DataError(f"no images in {printable(path)} (the folder is empty)")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in READERS:
        raise ConfigError(f"unknown format {fmt!r}; choose from {['auto', *FORMATS]}")
    reader = READERS[fmt]
    options = {k: v for k, v in options.items() if v is not None}
    check_options(fmt, options, reader.OPTIONS)
    check = check_level(str(options.pop("check", "full")))
    size = int(options.pop("size", PATCH_SIZE))  # type: ignore[call-overload]
    policy = check_size_policy(str(options.pop("size_policy", DEFAULT_SIZE_POLICY)))
    workers = options.pop("workers", None)
    entries = reader.read(path, log, **options)
    records = check_images(entries, log, check=check, size=size, policy=policy,
                           workers=int(workers) if workers else None)  # type: ignore[call-overload]
    if domain is not None:
        fields = [domain] if isinstance(domain, str) else list(domain)
        if records:
            try:
                records = assign_domains(records, fields)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
    if not records and not log.problems:
        raise DataError(f"{path}: no figures found")
    return ReadResult(records, log.problems, fmt=fmt, path=path, sources=log.sources)
