"""Whole-slide images opened for reading regions and thumbnails, through OpenSlide or tifffile.

OpenSlide reads the vendors' formats (Aperio SVS, Hamamatsu NDPI/VMS, MIRAX, Leica SCN, Philips and Ventana
TIFF, DICOM, ...) and generic tiled TIFFs whose pyramid levels are pages of the main chain. It cannot read a
TIFF written in strips, and it sees only the first level of a pyramid stored as SubIFDs (how OME-TIFF and most
converters write it) and no OME resolution: those are read with tifffile, which decodes only the tiles (or
strips) a region touches and keeps the last ones decoded. ``backend="auto"`` picks, per file, the one that
sees the whole pyramid; both give the same pixels where both can read a file.

Every third-party failure while reading becomes a one-line :class:`~mitotype.errors.DataError` naming the slide:
a cohort goes on past a broken file.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np

from mitotype.data.patches import TIFF_SUFFIXES, ImageProblem, array_to_rgb
from mitotype.errors import DataError
from mitotype.slides.resolution import Resolution, from_openslide, from_tiff, tiff_resolution

BACKENDS = ("auto", "openslide", "tifffile")
CHUNK_CACHE_BYTES = 256 << 20
"""Decoded tiles kept per open TIFF slide (figures cluster, so neighbouring crops share tiles)."""
WHOLE_PAGE_PIXELS = 64_000_000
"""A TIFF page in a layout read only whole (planar colour, extra dimensions) is refused above this size."""


def _openslide():
    try:
        import openslide
    except ImportError:
        return None
    return openslide


def slide_error(path: Path, exc: BaseException) -> DataError:
    """The one line for a slide a reader failed on."""
    reason = exc.message if isinstance(exc, ImageProblem) else (str(exc).strip() or type(exc).__name__)
    return DataError(f"{path}: cannot read the slide ({reason})")


class Slide:
    """A pyramid of levels (level 0 the finest) that gives RGB regions with black outside the image."""

    backend = ""

    def __init__(self, path: Path, level_dimensions: list[tuple[int, int]], resolution: Resolution | None,
                 vendor: str) -> None:
        self.path = path
        self.level_dimensions = level_dimensions
        """``(width, height)`` of each level."""
        self.resolution = resolution
        """What the file states (maybe implausible: :func:`mitotype.slides.resolution.implausible`), or ``None``."""
        self.vendor = vendor

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    def downsample(self, level: int) -> tuple[float, float]:
        """Level-0 pixels per pixel of ``level``, along x and y."""
        (w0, h0), (w, h) = self.level_dimensions[0], self.level_dimensions[level]
        return w0 / w, h0 / h

    def read_region(self, level: int, x0: int, y0: int, width: int, height: int) -> np.ndarray:
        """``height x width x 3`` uint8 of ``level`` from its pixel ``(x0, y0)`` (level coordinates)."""
        try:
            return self._read_region(level, int(x0), int(y0), int(width), int(height))
        except DataError:
            raise
        except Exception as exc:  # the decoders raise many types for broken files
            raise slide_error(self.path, exc) from None

    def thumbnail(self, max_side: int) -> np.ndarray:
        """The whole slide, at most ``max_side`` pixels on its longer side (never larger than level 0)."""
        try:
            return self._thumbnail(max_side)
        except DataError:
            raise
        except Exception as exc:
            raise slide_error(self.path, exc) from None

    def _read_region(self, level: int, x0: int, y0: int, width: int, height: int) -> np.ndarray:
        raise NotImplementedError

    def _thumbnail(self, max_side: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OpenSlideSlide(Slide):
    backend = "openslide"

    def __init__(self, path: Path) -> None:
        openslide = _openslide()
        self._slide = openslide.OpenSlide(str(path))
        props = self._slide.properties
        resolution = from_openslide(props)
        if resolution is None and path.suffix.lower() in TIFF_SUFFIXES:
            resolution = tiff_resolution(path)
        super().__init__(path, [tuple(map(int, d)) for d in self._slide.level_dimensions], resolution,
                         props.get("openslide.vendor", "unknown"))

    def _read_region(self, level: int, x0: int, y0: int, width: int, height: int) -> np.ndarray:
        dx, dy = self.downsample(level)
        rgba = np.asarray(self._slide.read_region((round(x0 * dx), round(y0 * dy)), level, (width, height)))
        alpha = rgba[..., 3:4].astype(np.uint16)  # outside the scanned area: transparent, black here
        return ((rgba[..., :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)

    def _thumbnail(self, max_side: int) -> np.ndarray:
        w, h = self.dimensions
        scale = min(1.0, max_side / max(w, h))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return np.asarray(self._slide.get_thumbnail(size).convert("RGB"))

    def close(self) -> None:
        self._slide.close()


class TiffSlide(Slide):
    """A TIFF read chunk by chunk (tiles or strips) with tifffile; levels from its first series' pyramid."""

    backend = "tifffile"

    def __init__(self, path: Path) -> None:
        import tifffile

        self._tif = tifffile.TiffFile(path)
        if not self._tif.series:
            raise DataError(f"{path}: cannot read the slide (a TIFF without an image)")
        levels = self._tif.series[0].levels
        self._pages = [level.keyframe for level in levels]
        dims = [_page_size(page) for page in self._pages]
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        self._whole: dict[int, np.ndarray] = {}
        super().__init__(path, dims, from_tiff(self._tif), "generic-tiff" if not self._tif.is_ome else "ome-tiff")

    # -- chunks ---------------------------------------------------------------------------------------

    def _chunk_shape(self, level: int) -> tuple[int, int]:
        page = self._pages[level]
        w, h = self.level_dimensions[level]
        if page.is_tiled:
            return int(page.tilelength), int(page.tilewidth)
        rows = int(page.rowsperstrip or h)
        return min(rows, h), w

    def _chunkable(self, level: int) -> bool:
        page = self._pages[level]
        contiguous = page.planarconfig == 1 or page.samplesperpixel == 1
        return contiguous and len(page.shape) in (2, 3) and page.imagedepth == 1 and len(page.dataoffsets) > 0

    def _chunk(self, level: int, index: int) -> np.ndarray | None:
        key = (level, index)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        page = self._pages[level]
        offset, count = page.dataoffsets[index], page.databytecounts[index]
        if not count:
            return None  # a tile the scanner never wrote: black
        handle = self._tif.filehandle
        handle.seek(offset)
        data = handle.read(count)
        segment, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
        if segment is None:
            return None
        rgb, _ = array_to_rgb(np.asarray(segment).reshape(segment.shape[-3:]))
        self._cache[key] = rgb
        self._cached_bytes += rgb.nbytes
        while self._cached_bytes > CHUNK_CACHE_BYTES and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.nbytes
        return rgb

    def _whole_page(self, level: int) -> np.ndarray:
        if level not in self._whole:
            w, h = self.level_dimensions[level]
            if w * h > WHOLE_PAGE_PIXELS:
                raise DataError(f"{self.path}: a TIFF level of {w}x{h} pixels stored in a layout read only whole "
                                f"(planar colour or extra dimensions, shape {self._pages[level].shape}); convert it "
                                "to a tiled pyramidal TIFF")
            self._whole[level], _ = array_to_rgb(np.squeeze(self._pages[level].asarray()))
        return self._whole[level]

    def _read_region(self, level: int, x0: int, y0: int, width: int, height: int) -> np.ndarray:
        out = np.zeros((height, width, 3), np.uint8)
        w, h = self.level_dimensions[level]
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + width, w), min(y0 + height, h)
        if sx1 <= sx0 or sy1 <= sy0:
            return out
        if not self._chunkable(level):
            out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = self._whole_page(level)[sy0:sy1, sx0:sx1]
            return out
        ch, cw = self._chunk_shape(level)
        cols = math.ceil(w / cw)
        for row in range(sy0 // ch, (sy1 - 1) // ch + 1):
            for col in range(sx0 // cw, (sx1 - 1) // cw + 1):
                chunk = self._chunk(level, row * cols + col)
                if chunk is None:
                    continue
                cy0, cx0 = row * ch, col * cw  # the chunk's origin on the level
                ay0, ay1 = max(sy0, cy0), min(sy1, cy0 + chunk.shape[0])
                ax0, ax1 = max(sx0, cx0), min(sx1, cx0 + chunk.shape[1])
                if ay1 > ay0 and ax1 > ax0:
                    out[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = chunk[ay0 - cy0 : ay1 - cy0, ax0 - cx0 : ax1 - cx0]
        return out

    def _thumbnail(self, max_side: int) -> np.ndarray:
        from PIL import Image

        w0, h0 = self.dimensions
        scale = min(1.0, max_side / max(w0, h0))
        size = (max(1, round(w0 * scale)), max(1, round(h0 * scale)))
        # the coarsest level still at least as large as the thumbnail, read in bands and reduced band by band
        level = max((k for k, (w, _) in enumerate(self.level_dimensions) if w >= size[0]), default=0)
        w, h = self.level_dimensions[level]
        factor = max(1, int(w / size[0]))
        band = max(factor, (4096 // factor) * factor)
        parts = []
        for y in range(0, h, band):
            rows = min(band, h - y)
            region = Image.fromarray(self._read_region(level, 0, y, w, rows))
            parts.append(np.asarray(region.reduce(factor) if factor > 1 else region))
        reduced = Image.fromarray(np.concatenate(parts))
        if reduced.size != size:
            reduced = reduced.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(reduced)

    def close(self) -> None:
        self._tif.close()
        self._cache.clear()
        self._whole.clear()


def _page_size(page) -> tuple[int, int]:  # page: tifffile.TiffPage
    axes, shape = page.axes, page.shape
    return int(shape[axes.index("X")]), int(shape[axes.index("Y")])


def _tiff_levels(path: Path) -> int:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return len(tif.series[0].levels) if tif.series else 0
    except Exception:
        return 0


def choose_backend(path: Path) -> str:
    """``openslide`` for the vendors' formats and for TIFFs whose whole pyramid it sees; ``tifffile`` for the
    TIFFs it cannot read or sees only in part; a :class:`DataError` for a file neither reads."""
    openslide = _openslide()
    try:
        vendor = openslide.OpenSlide.detect_format(str(path)) if openslide is not None else None
    except Exception:
        vendor = None
    is_tiff = path.suffix.lower() in TIFF_SUFFIXES | {".btf", ".qptiff"}
    if vendor and vendor != "generic-tiff":
        return "openslide"
    if is_tiff:
        levels = _tiff_levels(path)
        if vendor == "generic-tiff" and levels:
            with openslide.OpenSlide(str(path)) as slide:
                if slide.level_count >= levels:
                    return "openslide"
        if levels or not vendor:
            return "tifffile"  # which says why, when it cannot read it either
    if vendor:
        return "openslide"
    if openslide is None and not is_tiff:
        raise DataError(f"{path}: reading this slide format needs OpenSlide (pip install 'mitotype[wsi]')")
    raise DataError(f"{path}: not a slide OpenSlide or tifffile can read")


def open_slide(path: str | Path, backend: str = "auto") -> Slide:
    """The slide at ``path`` through ``backend`` (``auto``, ``openslide`` or ``tifffile``)."""
    path = Path(path)
    if backend not in BACKENDS:
        raise DataError(f"unknown slide backend {backend!r}; choose from {list(BACKENDS)}")
    if not path.is_file():
        raise DataError(f"{path}: no such slide file")
    try:
        chosen = choose_backend(path) if backend == "auto" else backend
        if chosen == "openslide":
            if _openslide() is None:
                raise DataError(f"{path}: reading it needs OpenSlide (pip install 'mitotype[wsi]')")
            return OpenSlideSlide(path)
        return TiffSlide(path)
    except DataError:
        raise
    except Exception as exc:
        raise slide_error(path, exc) from None
