"""Reading the challenge's input: one multi-page TIFF of 128x128 RGB patches, one figure per page.

The platform fails the whole job when the output length differs from the number of pages, so a
stack we cannot read completely is an error (one line naming the file), never a partial result.

tifffile reads the pages; a compression it decodes only with imagecodecs (LZW, JPEG: about 80 MB that the
base install leaves out) is decoded by Pillow's libtiff instead, page by page, with the same checks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mitotype.data.patches import blank_colour, blank_message
from mitotype.errors import DataError, printable
from mitotype.paths import refuse_special_file

__all__ = ["MAX_PAGES", "PATCH_SIZE", "STACK_SUFFIXES", "blank_page_notes", "find_stack", "page_ids", "read_stack"]

MAX_PAGES = 16
"""The challenge's stacks hold up to 16 figures."""

PATCH_SIZE = 128
"""Each page is a 128x128 RGB patch centred on one figure."""

STACK_SUFFIXES = (".tif", ".tiff")


def find_stack(input_dir: str | Path) -> Path:
    """The one ``.tif``/``.tiff`` file in ``input_dir`` (not recursive; hidden files are ignored).

    The platform gives exactly one stack per job; none or several means the container was started
    on the wrong folder, which we report rather than guess.
    """
    folder = Path(input_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: input folder not found (expected one .tif/.tiff stack in it)")
    found = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in STACK_SUFFIXES and not p.name.startswith(".")
    )
    if not found:
        raise DataError(f"{folder}: no .tif/.tiff stack found in this folder")
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:5])
        raise DataError(f"{folder}: expected exactly one .tif/.tiff stack, found {len(found)}: {names}")
    return found[0]


def _page_rgb(page: object, data: np.ndarray, index: int, path: Path, size: int) -> np.ndarray:
    """Check one decoded page and return it as (size, size, 3) uint8."""
    axes = getattr(page, "axes", "")
    if data.ndim == 3 and axes.startswith("S") and data.shape[0] in (3, 4):  # planar (separate) storage
        data = np.moveaxis(data, 0, -1)
    where = f"{path}: page {index}"
    if data.ndim == 2:
        raise DataError(f"{where} is grayscale {data.shape[1]}x{data.shape[0]}; expected {size}x{size} RGB")
    if data.ndim != 3 or data.shape[-1] not in (3, 4):
        raise DataError(f"{where} has shape {data.shape}; expected {size}x{size} RGB ({size}, {size}, 3)")
    if data.shape[-1] == 4:
        raise DataError(f"{where} is RGBA (4 channels); expected {size}x{size} RGB without alpha")
    if data.shape[:2] != (size, size):
        raise DataError(f"{where} is {data.shape[1]}x{data.shape[0]} pixels; expected {size}x{size} RGB")
    if data.dtype != np.uint8:
        raise DataError(f"{where} has sample type {data.dtype}; expected 8-bit RGB")
    return data


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _tifffile_errors() -> Iterator[list[str]]:
    """Collect tifffile's logged errors: it reports a broken page chain by logging, not raising,
    and then simply lists fewer pages, which would shorten our output without notice."""
    handler = _Collect()
    log = logging.getLogger("tifffile")
    log.addHandler(handler)
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)


def read_stack(path: str | Path, max_pages: int | None = MAX_PAGES, size: int = PATCH_SIZE) -> np.ndarray:
    """All pages of a stack as an ``(N, size, size, 3)`` uint8 array, in page order.

    Raises :class:`~mitotype.errors.DataError` (one line naming the file) for a missing or corrupt
    file, zero pages, more than ``max_pages`` pages (``None``: no limit, for local use beyond the
    challenge), or a page that is not ``size`` x ``size`` 8-bit RGB (grayscale, RGBA, other sizes).
    """
    # start-up time: tifffile loads only when a stack is read
    import tifffile

    path = Path(path)
    refuse_special_file(path, "stack")
    if not path.is_file():
        raise DataError(f"{path}: stack file not found")
    try:
        with _tifffile_errors() as errors, tifffile.TiffFile(path) as tif:
            n_pages = len(tif.pages)
            if errors:
                raise DataError(f"{path}: the TIFF is damaged ({_one_line(RuntimeError(errors[0]))})")
            if n_pages == 0:
                raise DataError(f"{path}: the TIFF has no pages (expected one figure per page)")
            if max_pages is not None and n_pages > max_pages:
                raise DataError(f"{path}: the TIFF has {n_pages} pages; at most {max_pages} are allowed")
            pages = []
            for i, page in enumerate(tif.pages):
                try:
                    data = page.asarray()
                except Exception as exc:  # codecs raise many types; all mean "cannot decode"
                    if not _needs_imagecodecs(exc):
                        raise DataError(f"{path}: cannot decode page {i}: {_one_line(exc)}") from exc
                    data = _pillow_page(path, i, exc)
                    page = None  # Pillow's pages are interleaved RGB: no tifffile axes to read
                pages.append(_page_rgb(page, np.asarray(data), i, path, size))
    except DataError:
        raise
    except Exception as exc:  # tifffile.TiffFileError, struct.error, OSError, ...
        raise DataError(f"{path}: not a readable TIFF stack ({_one_line(exc)})") from exc
    return np.ascontiguousarray(np.stack(pages))


def _needs_imagecodecs(exc: BaseException) -> bool:
    """Whether tifffile refused a page only for want of the imagecodecs package."""
    return isinstance(exc, ValueError) and "imagecodecs" in str(exc)


def _pillow_page(path: Path, index: int, why: BaseException) -> np.ndarray:
    """Page ``index`` decoded by Pillow (its bundled libtiff reads LZW, JPEG and Deflate)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.seek(index)
            image.load()
            return np.asarray(image)
    except Exception as exc:  # Pillow raises many types for undecodable pages
        raise DataError(f"{path}: cannot decode page {index}: {_one_line(why)}; Pillow could not either "
                        f"({_one_line(exc)})") from exc


def page_ids(path: str | Path, count: int) -> list[str]:
    """``<stack file name>#<page>`` for each page: the ids of a stack's figures in outputs (a file name that
    is not UTF-8 is written escaped, :func:`~mitotype.errors.printable`)."""
    name = printable(Path(path).name)
    return [f"{name}#{i}" for i in range(count)]


def blank_page_notes(path: str | Path, images: np.ndarray) -> list[str]:
    """One line per blank page (every pixel one colour, e.g. all 0 or all 255): such a page holds no figure,
    yet it gets a score like any other (often atypical), so the person reading the output must be told."""
    notes = []
    for i, page in enumerate(images):
        if (colour := blank_colour(page)) is not None:
            notes.append(f"{printable(path)}: page {i} is {blank_message(colour)}")
    return notes


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
