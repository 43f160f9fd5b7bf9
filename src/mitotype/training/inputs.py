"""From a run's data configuration to records plus their decoded pixels: one dataset, or several in one store.

Reading one dataset (:func:`load_figures`, :class:`Figures`, the reading notes) is shared with inference and
lives in :mod:`mitotype.data.figures`; its names are importable from here as before.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mitotype.data.figures import (
    DUPLICATE_ACROSS,
    QUIET_WARNINGS,
    Figures,
    adaptation_note,
    duplicates_note,
    filter_records,
    load_figures,
    reading_notes,
    skipped_note,
    warnings_note,
)
from mitotype.data.problems import Problem, ReadResult
from mitotype.data.readers import read_dataset
from mitotype.data.records import FigureRecord, namespaced
from mitotype.data.store import PatchStore
from mitotype.errors import DataError
from mitotype.training.config import DataSettings

__all__ = ["DUPLICATE_ACROSS", "QUIET_WARNINGS", "Figures", "adaptation_note", "duplicates_note", "filter_records",
           "load_data_figures", "load_figures", "reading_notes", "skipped_note", "warnings_note"]


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
