"""From a data configuration to records plus their decoded pixels (decode once, then memory-map)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mitotype.data.problems import ReadResult
from mitotype.data.readers import read_dataset
from mitotype.data.records import FigureRecord
from mitotype.data.store import PatchStore
from mitotype.errors import DataError


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


def filter_records(records: list[FigureRecord], include: dict[str, str]) -> list[FigureRecord]:
    """Records whose metadata matches every ``include`` item (e.g. ``benchmark_split: train``)."""
    if not include:
        return records
    kept = [r for r in records if all(r.meta.get(k) == v for k, v in include.items())]
    if not kept:
        raise DataError(f"no figure matches include={include}")
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
    store = PatchStore.open_or_build(records, cache_dir=cache_dir)
    return Figures(records=list(store.records), images=store.images, read_result=result)


def adaptation_note(figures: Figures) -> str | None:
    """One line counting the images that were not used as stored (colour mode converted, size fitted),
    so a silent conversion of many images is visible once instead of per image or not at all."""
    from mitotype.data.problems import CONVERTED_MODE, WRONG_SIZE

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
