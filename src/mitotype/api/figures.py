"""Whatever figures a user holds, as the 128 x 128 RGB uint8 patches a model takes, each with an id.

`read_figures` reads a path exactly as ``mitotype predict`` reads its input (it is the same code: a
TIFF stack page by page, anything else through the dataset readers and the patch store), and
`as_figures` accepts what a notebook holds besides: uint8 numpy arrays (one H x W x 3 figure or an
N x H x W x 3 batch), PIL images, paths, folders, and lists of these. Every figure of another size goes
through the readers' size policy (`mitotype.data.patches.fit_to_size`: centre-crop or black-pad by
default), so an array, its PIL image and its PNG file give the same pixels and the same p(atypical).
Anything unusable raises a one-line `DataError` naming the figure and the problem.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mitotype.data.figures import load_figures, reading_notes
from mitotype.data.patches import (
    DEFAULT_SIZE_POLICY,
    PATCH_SIZE,
    TIFF_SUFFIXES,
    ImageProblem,
    check_size_policy,
    decode_patch_file,
    fit_to_size,
    pil_to_rgb,
)
from mitotype.data.problems import CONVERTED_MODE, WRONG_SIZE
from mitotype.data.readers.unlabelled import PATCH_SUFFIXES
from mitotype.data.records import FigureRecord
from mitotype.errors import DataError

__all__ = ["FigureBatch", "as_figures", "read_figures"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True, eq=False)  # holds arrays: identity, not element-wise truth
class FigureBatch:
    """Figures ready to classify: their pixels, one id each, and what reading them found.

    Made by `read_figures` or `as_figures`; `mitotype.Classifier.predict` takes it as it is.
    """

    ids: list[str]
    """One id per figure: the reader's (a file's path relative to its folder, ``<stack>#<page>``), or the
    figure's position (``"0"``, ``"1"``, ...) for in-memory figures."""
    images: np.ndarray
    """N x 128 x 128 x 3 uint8 RGB (a read-only memory map for a folder read through the patch store)."""
    records: list[FigureRecord | None] | None = None
    """The reader's record of each figure (label, domain, votes), ``None`` for in-memory ones; ``None``
    when no figure came through a reader."""
    notes: list[str] = field(default_factory=list)
    """What reading found worth saying once (records skipped, images converted or resized, warnings)."""
    sources: list[Path] = field(default_factory=list)
    """Label files the readers found inside the input (an output must never overwrite one)."""
    warnings: list[str] = field(default_factory=list)
    """One line per figure whose score means nothing (a blank page of a stack: every pixel one colour)."""
    """Label files the readers found (an output must never overwrite one)."""

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def labels(self) -> list[int | None] | None:
        """Each figure's label where its input has one (1 atypical, 0 normal), ``None`` when no figure has one."""
        if self.records is None or all(r is None or r.label is None for r in self.records):
            return None
        return [None if r is None else r.label for r in self.records]


def read_figures(source: PathLike, *, format: str = "auto", domain: Sequence[str] | None = None,
                 on_error: str = "fail", size_policy: str | None = None,
                 reader_options: dict[str, Any] | None = None) -> FigureBatch:
    """Read figures from a path as ``mitotype predict`` does.

    A ``.tif``/``.tiff`` file (with ``format="auto"``) is a stack: every page a 128 x 128 RGB figure, ids
    ``<file name>#<page>``. Anything else goes through the dataset readers (``format``: ``auto`` detects
    it; a folder of patches at any depth, a ``.txt`` list of paths, one image, a labelled dataset) with
    ``domain``, ``on_error`` (``fail`` or ``skip``), ``size_policy`` and the readers' own
    ``reader_options`` (``columns``, ``labels``, ``images_dir``, ``meta_csv``); labels are kept where the
    input has them, never required.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix.lower() in TIFF_SUFFIXES and format == "auto":
        from mitotype.serving.stack import blank_page_notes, page_ids, read_stack

        images = read_stack(path, max_pages=None)
        return FigureBatch(page_ids(path, len(images)), images, warnings=blank_page_notes(path, images))
    options = dict(reader_options or {})
    if size_policy is not None:
        options["size_policy"] = size_policy
    figures = load_figures(path, fmt=format, domain=list(domain) if domain else None, on_error=on_error,
                           labels_optional=True, reader_options=options)
    sources = list(figures.read_result.sources) if figures.read_result is not None else []
    return FigureBatch([r.uid for r in figures.records], figures.images, list(figures.records),
                       reading_notes(figures), sources)


def as_figures(figures: Any, *, size_policy: str = DEFAULT_SIZE_POLICY) -> FigureBatch:
    """Any figures `mitotype.Classifier.predict` accepts, as one `FigureBatch` in the order given.

    ``figures``: a uint8 numpy array (H, W, 3) or batch (N, H, W, 3), a PIL image, a path (an image, a TIFF
    stack, a folder, a ``.txt`` list or any dataset, read by `read_figures`), a `FigureBatch`,
    or a list or tuple of these. Figures of any size are brought to 128 x 128 by ``size_policy``
    (``center-crop``, the default; ``resize``; ``reject``).
    """
    check_size_policy(size_policy)
    if isinstance(figures, FigureBatch):
        return figures
    items = list(figures) if isinstance(figures, list | tuple) else [figures]
    if not items:
        raise DataError("figures: the list is empty; give at least one figure")
    collector = _Collector(size_policy, several=isinstance(figures, list | tuple))
    for index, item in enumerate(items):
        collector.add(item, index)
    return collector.batch()


class _Collector:
    """Figures gathered item by item; in-memory ones are numbered by their position in the result."""

    def __init__(self, size_policy: str, several: bool) -> None:
        self.size_policy = size_policy
        self.several = several
        self.parts: list[FigureBatch] = []
        self.count = 0
        self.adapted = {CONVERTED_MODE: 0, WRONG_SIZE: 0}

    def where(self, index: int) -> str:
        return f"figures[{index}]" if self.several else "figures"

    def add(self, item: Any, index: int) -> None:
        if isinstance(item, FigureBatch):
            self._append(item)
        elif isinstance(item, np.ndarray):
            self._array(item, index)
        elif isinstance(item, str | os.PathLike):
            self._path(Path(item), index)
        elif _is_pil_image(item):
            try:
                pixels, notes = pil_to_rgb(item)
            except (OSError, ValueError, SyntaxError) as exc:  # a lazily opened image that cannot be decoded
                raise DataError(f"{self.where(index)}: cannot decode the PIL image ({exc})") from None
            self._in_memory([self._fit(pixels, notes, index)])
        elif isinstance(item, list | tuple):
            raise DataError(f"{self.where(index)}: a nested {type(item).__name__}; give one flat list of figures")
        else:
            raise DataError(f"{self.where(index)}: cannot classify a {type(item).__name__}; give uint8 numpy "
                            "arrays (H, W, 3) or (N, H, W, 3), PIL images, image paths or a folder")

    def _array(self, array: np.ndarray, index: int) -> None:
        where = self.where(index)
        if array.dtype != np.uint8:
            raise DataError(f"{where}: pixels must be uint8 (0-255), got a {array.dtype} array (from [0, 1] floats: "
                            "(x * 255).round().astype(np.uint8))")
        if array.ndim == 2:
            raise DataError(f"{where}: a 2-D array {array.shape} is not an RGB figure; expected (H, W, 3) or "
                            "(N, H, W, 3) uint8")
        if array.ndim not in (3, 4) or array.shape[-1] != 3:
            raise DataError(f"{where}: expected RGB figures as (H, W, 3) or (N, H, W, 3) uint8, got shape "
                            f"{array.shape}")
        if min(array.shape[-3:-1]) == 0:
            raise DataError(f"{where}: a figure of {array.shape[-2]}x{array.shape[-3]} pixels holds no image")
        batch = array[None] if array.ndim == 3 else array
        if len(batch) == 0:  # no figures, of whatever size: `batch` says so when nothing else is given
            self._in_memory(np.zeros((0, PATCH_SIZE, PATCH_SIZE, 3), np.uint8))
        elif batch.shape[1:3] == (PATCH_SIZE, PATCH_SIZE):
            self._in_memory(np.ascontiguousarray(batch))
        else:
            self._in_memory([self._fit(figure, [], index) for figure in batch])

    def _fit(self, pixels: np.ndarray, notes: list, index: int) -> np.ndarray:
        try:
            fitted, size_notes = fit_to_size(pixels, PATCH_SIZE, self.size_policy)
        except ImageProblem as exc:
            raise DataError(f"{self.where(index)}: {exc.message}") from None
        self._count([*notes, *size_notes])
        return fitted

    def _path(self, path: Path, index: int) -> None:
        suffix = path.suffix.lower()
        if self.several and suffix in PATCH_SUFFIXES and suffix not in TIFF_SUFFIXES and path.is_file():
            try:  # one image of a list: decoded as the reader would, without a reader and a store per file
                pixels, notes = decode_patch_file(path, PATCH_SIZE, self.size_policy)
            except ImageProblem as exc:
                raise DataError(f"{path}: {exc.message} [{exc.kind}]") from None
            self._count(notes)
            self._append(FigureBatch([path.name], pixels[None]))
            return
        self._append(read_figures(path, size_policy=self.size_policy))

    def _count(self, notes: list) -> None:
        for kind, _ in notes:
            if kind in self.adapted:
                self.adapted[kind] += 1

    def _in_memory(self, figures: Sequence[np.ndarray] | np.ndarray) -> None:
        images = figures if isinstance(figures, np.ndarray) else np.stack(figures)
        ids = [str(self.count + i) for i in range(len(images))]
        self._append(FigureBatch(ids, images))

    def _append(self, part: FigureBatch) -> None:
        self.parts.append(part)
        self.count += len(part)

    def batch(self) -> FigureBatch:
        if self.count == 0:
            raise DataError("figures: no figures given (an empty batch)")
        if len(self.parts) == 1:
            only = self.parts[0]
            return FigureBatch(only.ids, only.images, only.records, only.notes + self._notes(), only.sources)
        records = None
        if any(p.records is not None for p in self.parts):
            records = [r for p in self.parts for r in (p.records or [None] * len(p))]
        return FigureBatch([i for p in self.parts for i in p.ids], np.concatenate([p.images for p in self.parts]),
                           records, [n for p in self.parts for n in p.notes] + self._notes(),
                           [s for p in self.parts for s in p.sources])

    def _notes(self) -> list[str]:
        converted, resized = self.adapted[CONVERTED_MODE], self.adapted[WRONG_SIZE]
        parts = []
        if converted:
            parts.append(f"{converted} converted to RGB (grey, palette, RGBA or high bit depth)")
        if resized:
            parts.append(f"{resized} not {PATCH_SIZE}x{PATCH_SIZE} ({self.size_policy})")
        return [f"{' and '.join(parts)} of {self.count} figures given"] if parts else []


def _is_pil_image(item: Any) -> bool:
    """Whether ``item`` is a PIL image (checked without importing PIL for other inputs)."""
    if not type(item).__module__.startswith("PIL."):
        return False
    from PIL import Image

    return isinstance(item, Image.Image)
