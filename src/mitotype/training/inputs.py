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
) -> Figures:
    """Read a dataset with any reader and back it with the decode-once patch store."""
    if not str(path):
        raise DataError("no dataset given (set data.path or pass --data)")
    options = {"images_dir": images_dir} if images_dir else {}
    result = read_dataset(Path(path), fmt=fmt, domain=domain, on_error=on_error, **options)
    records = filter_records(result.records, include or {})
    if not records:
        raise DataError(f"{path}: no usable figures")
    store = PatchStore.open_or_build(records, cache_dir=cache_dir)
    return Figures(records=list(store.records), images=store.images, read_result=result)
