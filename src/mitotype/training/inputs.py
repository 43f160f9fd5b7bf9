"""From a data configuration to records plus their decoded pixels (decode once, then memory-map)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mitotype.data.images import DEFAULT_SIZE_POLICY
from mitotype.data.problems import BLANK_IMAGE, CONVERTED_MODE, WRONG_SIZE, Problem, ReadResult
from mitotype.data.readers import read_dataset
from mitotype.data.records import FigureRecord, namespaced
from mitotype.data.store import PatchStore
from mitotype.errors import DataError
from mitotype.training.config import DataSettings

DUPLICATE_ACROSS = "duplicate-across-datasets"
"""Warning kind: a figure whose pixels equal a figure of another dataset of the same run."""


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


def load_data_figures(data: DataSettings, cache_dir: str | Path | None = None) -> Figures:
    """The figures a run's ``data`` block names: its one dataset (``data.path``, read exactly as
    :func:`load_figures` reads it), or every dataset of ``data.sources`` in one patch store.

    Several datasets: each is read with its own reader options, filtered by its ``include``, then
    :func:`~mitotype.data.records.namespaced` (its domains, groups and ids prefixed by its name, so no slide
    or domain is shared across datasets); votes stay where a dataset has them (soft labels), hard labels
    elsewhere. Figures with identical pixels in two datasets are reported as ``duplicate-across-datasets``
    warnings (the same figure published twice would sit in two groups and could leak across a split).
    ``cache_dir``: the patch store's folder; ``None`` = ``data.cache_dir``.
    """
    cache = cache_dir if cache_dir is not None else data.cache_dir
    if not data.sources:
        return load_figures(data.path, fmt=data.format, domain=data.domain, on_error=data.on_error,
                            include=data.include, cache_dir=cache, reader_options=data.reader_options())
    records: list[FigureRecord] = []
    problems: list[Problem] = []
    sources: list[Path] = []
    formats: list[str] = []
    for source in data.resolved_sources():
        result = read_dataset(Path(source.path), fmt=source.format or "auto", domain=source.domain,
                              on_error=source.on_error or "fail", **data.source_reader_options(source))
        kept = filter_records(result.records, source.include or {}, where=source.path)
        if not kept:
            raise DataError(f"{source.path}: no usable figures")
        records += namespaced(kept, source.name)
        problems += result.problems
        sources += result.sources
        formats.append(f"{source.name}={result.fmt}")
    store = PatchStore.open_or_build(records, cache_dir=cache, policy=data.size_policy)
    problems += _duplicates_across(store.records, store.images)
    result = ReadResult(list(store.records), problems, fmt=", ".join(formats), sources=sources)
    return Figures(records=list(store.records), images=store.images, read_result=result)


def _duplicates_across(records: list[FigureRecord], images: np.ndarray) -> list[Problem]:
    """A warning per figure whose decoded pixels equal those of a figure of an earlier dataset."""
    first: dict[bytes, FigureRecord] = {}
    found = []
    for record, pixels in zip(records, images):
        digest = hashlib.blake2b(np.ascontiguousarray(pixels).tobytes(), digest_size=16).digest()
        seen = first.setdefault(digest, record)
        if seen.dataset != record.dataset:
            found.append(Problem(str(record.image), None, DUPLICATE_ACROSS,
                                 f"{record.uid} has the pixels of {seen.uid} (the same figure in two datasets?)",
                                 "warning"))
    return found


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
