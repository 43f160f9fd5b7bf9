"""A dataset read for use: its records plus their decoded pixels (decode once, then memory-map).

What every command that reads figures shares, training or not: ``predict``, ``evaluate`` and the Python API
read through :func:`load_figures` exactly as ``train`` does, and say how the reading went in the same notes
(:func:`reading_notes`). Several datasets at once (a run's ``data.sources``) are the training configuration's
business: :mod:`mitotype.training.inputs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mitotype.data.patches import DEFAULT_SIZE_POLICY
from mitotype.data.problems import BLANK_IMAGE, CONVERTED_MODE, WRONG_SIZE, ReadResult
from mitotype.data.readers import read_dataset
from mitotype.data.records import FigureRecord
from mitotype.data.store import PatchStore
from mitotype.errors import DataError

DUPLICATE_ACROSS = "duplicate-across-datasets"
"""Warning kind: a figure whose pixels equal a figure of another dataset of the same run."""

__all__ = ["DUPLICATE_ACROSS", "QUIET_WARNINGS", "Figures", "adaptation_note", "duplicates_note", "filter_records",
           "load_figures", "reading_notes", "skipped_note", "warnings_note"]


@dataclass
class Figures:
    """Records and their pixels, row ``i`` of ``images`` belonging to ``records[i]``."""

    records: list[FigureRecord]
    images: np.ndarray
    """N x 128 x 128 x 3 uint8 (usually a read-only memory map of the patch store)."""
    read_result: ReadResult | None = None
    """What the reader reported (skipped rows and warnings), when the figures came from a dataset."""

    def __len__(self) -> int:
        return len(self.records)


def filter_records(records: list[FigureRecord], include: dict[str, str], where: str = "") -> list[FigureRecord]:
    """Records whose metadata matches every ``include`` item (e.g. ``benchmark_split: train``); ``where``
    (a dataset path) prefixes the error when none does."""
    if not include:
        return records
    kept = [r for r in records if all(r.meta.get(k) == v for k, v in include.items())]
    if not kept:
        raise DataError(f"{where}: no figure matches include={include}" if where else
                        f"no figure matches include={include}")
    return kept


def load_figures(
    path: str | Path,
    fmt: str = "auto",
    domain: list[str] | None = None,
    images_dir: str | None = None,
    on_error: str = "fail",
    include: dict[str, str] | None = None,
    cache_dir: str | Path | None = None,
    labels_optional: bool = False,
    reader_options: dict[str, object] | None = None,
) -> Figures:
    """Read a dataset with any reader and back it with the decode-once patch store.

    ``labels_optional`` reads figures to classify (see :func:`~mitotype.data.readers.read_dataset`);
    ``reader_options`` are the reader's own options (``columns``, ``labels``, ``meta_csv``, ...).
    """
    if not str(path):
        raise DataError("no dataset given (set data.path or pass --data)")
    options = dict(reader_options or {})
    if images_dir:
        options["images_dir"] = images_dir
    result = read_dataset(Path(path), fmt=fmt, domain=domain, on_error=on_error,
                          labels_optional=labels_optional, **options)
    records = filter_records(result.records, include or {})
    if not records:
        raise DataError(f"{path}: no usable figures")
    policy = str(options.get("size_policy") or DEFAULT_SIZE_POLICY)  # the store fits patches as the reader did
    store = PatchStore.open_or_build(records, cache_dir=cache_dir, policy=policy)
    return Figures(records=list(store.records), images=store.images, read_result=result)


def adaptation_note(figures: Figures) -> str | None:
    """One line counting the images that were not used as stored (colour mode converted, size fitted),
    so a silent conversion of many images is visible once instead of per image or not at all."""
    if figures.read_result is None:
        return None
    counts = {CONVERTED_MODE: set(), WRONG_SIZE: set()}
    for problem in figures.read_result.problems:
        if problem.kind in counts:
            counts[problem.kind].add((problem.file, problem.row, problem.message))
    converted, resized = len(counts[CONVERTED_MODE]), len(counts[WRONG_SIZE])
    if not converted and not resized:
        return None
    parts = []
    if converted:
        parts.append(f"{converted} converted to RGB (grey, palette, RGBA or high bit depth)")
    if resized:
        parts.append(f"{resized} not 128x128 (cropped, padded or resized)")
    return (f"{' and '.join(parts)} of {len(figures.records)} images; "
            "`mitotype data inspect` lists each one")


def skipped_note(figures: Figures, shown: int = 3) -> str | None:
    """One line saying which records an ``on_error="skip"`` read dropped (the first ``shown`` by name), so
    that a prediction file or a training run missing figures says so where the user reads it."""
    if figures.read_result is None or not figures.read_result.errors:
        return None
    errors = figures.read_result.errors
    first = "; ".join(str(p) for p in errors[:shown])
    more = f"; and {len(errors) - shown} more" if len(errors) > shown else ""
    return (f"skipped {len(errors)} record(s) with errors (on_error=skip), kept {len(figures.records)}: "
            f"{first}{more}; `mitotype data inspect` lists each one")


QUIET_WARNINGS = (CONVERTED_MODE, WRONG_SIZE, DUPLICATE_ACROSS, BLANK_IMAGE)
"""Warning kinds that have a note of their own (:func:`adaptation_note`, :func:`duplicates_note`,
:func:`blank_notes`)."""
BLANK_NOTES_SHOWN = 20


def blank_notes(figures: Figures) -> list[str]:
    """One line per blank figure (every pixel one colour: nothing to classify, yet it gets a score), the
    first :data:`BLANK_NOTES_SHOWN` of them, then a count of the rest."""
    if figures.read_result is None:
        return []
    found = figures.read_result.of_kind(BLANK_IMAGE)
    notes = [str(p) for p in found[:BLANK_NOTES_SHOWN]]
    if len(found) > BLANK_NOTES_SHOWN:
        notes.append(f"{len(found) - BLANK_NOTES_SHOWN} more blank figure(s); `mitotype data inspect` lists each one")
    return notes


def warnings_note(figures: Figures) -> str | None:
    """One line counting the reader's other warnings by kind (duplicate ids, ignored files, ...), or ``None``."""
    if figures.read_result is None:
        return None
    counts: dict[str, int] = {}
    for problem in figures.read_result.warnings:
        if problem.kind not in QUIET_WARNINGS:
            counts[problem.kind] = counts.get(problem.kind, 0) + 1
    if not counts:
        return None
    listed = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"the reader warned ({listed}); `mitotype data inspect` lists each one"


def reading_notes(figures: Figures) -> list[str]:
    """Every note on how a dataset was read: records skipped, images adapted, warnings, duplicates."""
    notes = (skipped_note(figures), adaptation_note(figures), warnings_note(figures), duplicates_note(figures))
    return [note for note in notes if note] + blank_notes(figures)


def duplicates_note(figures: Figures) -> str | None:
    """One line counting figures that appear (pixel for pixel) in two of the run's datasets, or ``None``."""
    if figures.read_result is None:
        return None
    found = [p for p in figures.read_result.problems if p.kind == DUPLICATE_ACROSS]
    if not found:
        return None
    return (f"{len(found)} figure(s) have the same pixels as a figure of another dataset (first: "
            f"{found[0].message}); they are kept in both, in different groups, so a split may hold the same "
            "figure on both sides: remove them from one dataset (include) if they are the same figures")
