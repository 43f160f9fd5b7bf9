"""Decoding figures into one uint8 ``(size, size, 3)`` RGB array each, whatever the files look like.

Policies (stated once, used by the readers' checks, :func:`load_patch` and the patch store alike):

* Colour: grayscale (``L``, ``1``, 16-bit), palette (``P``), ``CMYK``/``YCbCr`` and alpha images are
  converted to RGB and reported as a ``converted-mode`` warning. Transparent pixels are composited onto
  black (the challenge data pads with black), 16-bit values are scaled to 8 bits.
* Size (``policy``) for patch files that are not ``size`` x ``size``:
  ``"center-crop"`` (default): per axis, a larger patch is cropped around its centre and a smaller one is
  padded with black around it, so the figure stays centred and the pixel scale is kept (scale matters
  more for mitotic morphology than field of view); ``"resize"``: the whole patch is scaled (bicubic) to
  ``size`` x ``size`` (a non-square patch is stretched); ``"reject"``: the patch is an error. Any
  non-``size`` patch is reported as a ``wrong-size`` warning (an error under ``"reject"``).
* Crops from larger images: the ``size`` x ``size`` window ``[x - size//2, x + size//2)`` (same for y),
  padded with black where it leaves the image, as the real challenge data is. PNG/JPEG/TIFF are read
  whole (TIFF through tifffile when PIL cannot); whole-slide formats (``.svs``, ``.ndpi``, ``.mrxs``, ...)
  and TIFFs too large to read whole go through openslide when it is importable.
* Corrupt or truncated files (including a PNG without its ``IEND`` chunk) are ``corrupt-image`` errors.
* A file of several pages or frames (a TIFF stack, an animated GIF) gives its first page only, reported
  as a ``multi-page`` warning: a stack of figures among patches would otherwise count as one figure.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from mitotype.data.problems import (
    BLANK_IMAGE,
    CONVERTED_MODE,
    CORRUPT_IMAGE,
    MULTI_PAGE,
    UNSUPPORTED_IMAGE,
    WRONG_SIZE,
)
from mitotype.data.records import FigureRecord
from mitotype.errors import ConfigError, DataError

PATCH_SIZE = 128
SizePolicy = Literal["center-crop", "resize", "reject"]
"""How a patch that is not ``size`` x ``size`` is fitted (the policies above); the one definition, which the
training configuration's ``data.size_policy`` takes too."""
SIZE_POLICIES: tuple[str, ...] = get_args(SizePolicy)
DEFAULT_SIZE_POLICY: SizePolicy = "center-crop"

WSI_SUFFIXES = frozenset({".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}) | TIFF_SUFFIXES | WSI_SUFFIXES
MAX_WHOLE_IMAGE_PIXELS = 400_000_000
"""Larger images are not read whole (a few GB of RAM); they need openslide's region access."""

Note = tuple[str, str]
"""A warning found while decoding: ``(problem kind, message)``."""

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Pillow warns (DecompressionBombWarning, printed as raw lines with its own file and line number) for any
# image over 89 M pixels; this module has its own size policy (MAX_WHOLE_IMAGE_PIXELS, wrong-size notes), and
# Pillow still refuses images over twice its limit, which becomes a corrupt-image error naming the file.
warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit", module=r"PIL\.Image")


class ImageProblem(Exception):
    """An image that cannot be used; ``kind`` is one of the :mod:`mitotype.data.problems` kinds."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def check_size_policy(policy: str) -> SizePolicy:
    if policy not in SIZE_POLICIES:
        raise ConfigError(f"size policy must be one of {list(SIZE_POLICIES)}, not {policy!r}")
    return policy  # type: ignore[return-value]


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def file_digest(path: str | Path) -> str:
    """A fast content hash of a file's bytes (blake2b, 128 bits)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def bytes_digest(data: bytes | memoryview) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# --------------------------------------------------------------------------------------------- colour


def mode_note(mode: str, opaque: bool | None = None) -> str | None:
    """The ``converted-mode`` message for a PIL mode, ``None`` for plain RGB."""
    if mode == "RGB":
        return None
    if mode in ("L", "1"):
        return f"grayscale ({mode}) image converted to RGB"
    if mode.startswith("I") or mode == "F":
        return f"high bit-depth grayscale ({mode}) image scaled to 8 bits and converted to RGB"
    if mode in ("P", "PA"):
        return f"palette ({mode}) image converted to RGB"
    if mode in ("RGBA", "LA", "RGBa", "La"):
        if opaque:
            return f"{mode} image converted to RGB (alpha channel dropped: fully opaque)"
        return f"{mode} image converted to RGB (transparent pixels composited onto black)"
    return f"{mode} image converted to RGB"


def _composite_black(rgb: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, bool]:
    opaque = bool((alpha == 255).all())
    if opaque:
        return np.ascontiguousarray(rgb), True
    out = (rgb.astype(np.uint16) * alpha[..., None].astype(np.uint16) + 127) // 255
    return out.astype(np.uint8), False


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        scale = 255.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 1.0
        return np.clip(np.nan_to_num(arr) * scale, 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        bits = 16 if arr.max(initial=0) > 255 else 8
        shifted = np.clip(arr.astype(np.int64), 0, (1 << bits) - 1) >> (bits - 8)
        return shifted.astype(np.uint8)
    raise ImageProblem(UNSUPPORTED_IMAGE, f"unsupported pixel type {arr.dtype}")


def array_to_rgb(arr: np.ndarray) -> tuple[np.ndarray, list[Note]]:
    """Any HxW, HxWxC (C = 1..4) or CxHxW array as uint8 HxWx3 RGB, with the conversion noted."""
    notes: list[Note] = []
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W) TIFF
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        notes.append((CONVERTED_MODE, f"{arr.dtype} pixels scaled to 8 bits"))
        arr = _to_uint8(arr)
    if arr.ndim == 2:
        notes.append((CONVERTED_MODE, "grayscale image converted to RGB"))
        return np.repeat(arr[..., None], 3, axis=2), notes
    if arr.ndim == 3 and arr.shape[2] == 2:  # gray + alpha
        rgb, opaque = _composite_black(np.repeat(arr[..., :1], 3, axis=2), arr[..., 1])
        notes.append((CONVERTED_MODE, mode_note("LA", opaque) or ""))
        return rgb, notes
    if arr.ndim == 3 and arr.shape[2] == 4:
        rgb, opaque = _composite_black(arr[..., :3], arr[..., 3])
        notes.append((CONVERTED_MODE, mode_note("RGBA", opaque) or ""))
        return rgb, notes
    if arr.ndim == 3 and arr.shape[2] == 3:
        return np.ascontiguousarray(arr), notes
    raise ImageProblem(UNSUPPORTED_IMAGE, f"unsupported image shape {arr.shape}")


def pil_to_rgb(image) -> tuple[np.ndarray, list[Note]]:  # image: PIL.Image.Image
    """A loaded PIL image as uint8 HxWx3 RGB, with the conversion noted (``[]`` for plain RGB)."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image), []
    if mode in ("P", "PA"):
        image = image.convert("RGBA" if ("transparency" in image.info or mode == "PA") else "RGB")
        arr, _ = pil_to_rgb(image)
        return arr, [(CONVERTED_MODE, mode_note(mode) or "")]
    if mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = np.asarray(image.convert("RGBA") if mode != "RGBA" else image)
        rgb, opaque = _composite_black(rgba[..., :3], rgba[..., 3])
        return rgb, [(CONVERTED_MODE, mode_note(mode, opaque) or "")]
    if mode in ("L", "1"):
        gray = np.asarray(image.convert("L"))
        return np.repeat(gray[..., None], 3, axis=2), [(CONVERTED_MODE, mode_note(mode) or "")]
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(image)
        gray = _to_uint8(arr.astype(np.int64) if mode.startswith("I") else arr)
        return np.repeat(gray[..., None], 3, axis=2), [(CONVERTED_MODE, mode_note(mode) or "")]
    return np.asarray(image.convert("RGB")), [(CONVERTED_MODE, mode_note(mode) or "")]


def pages_note(image) -> list[Note]:  # image: PIL.Image.Image
    """The ``multi-page`` warning for an image of several pages or frames (``[]`` for one)."""
    # counting frames reads the whole file: a damaged tail is the decoder's to report, not this note's
    try:
        n = int(getattr(image, "n_frames", 1))
    except (OSError, EOFError, ValueError, SyntaxError):
        return []
    if n <= 1:
        return []
    return [(MULTI_PAGE, f"{n} pages or frames: only the first is used as the figure (a stack of figures? "
                         "give it to `mitotype predict` on its own to classify every page)")]


def blank_colour(pixels: np.ndarray) -> tuple[int, ...] | None:
    """The one colour of an image whose every pixel is the same (all black, all white, one flat colour), else
    ``None``: such an image holds no figure, yet a model still gives it a score (often a confident one)."""
    flat = pixels.reshape(-1, pixels.shape[-1]) if pixels.ndim == 3 else pixels.reshape(-1, 1)
    if flat.size == 0 or not (flat == flat[0]).all():
        return None
    return tuple(int(v) for v in flat[0])


def blank_message(colour: tuple[int, ...]) -> str:
    shown = colour[0] if len(set(colour)) == 1 else colour
    return f"blank: every pixel is {shown}, so there is no figure; its score means nothing"


# ----------------------------------------------------------------------------------------------- size


def fit_to_size(arr: np.ndarray, size: int = PATCH_SIZE, policy: str = DEFAULT_SIZE_POLICY
                ) -> tuple[np.ndarray, list[Note]]:
    """A patch brought to ``size`` x ``size`` by ``policy`` (see the module docstring)."""
    h, w = arr.shape[:2]
    if (h, w) == (size, size):
        return arr, []
    if policy == "reject":
        raise ImageProblem(WRONG_SIZE, f"patch is {w}x{h}, expected {size}x{size} (size policy 'reject')")
    if policy == "resize":
        from PIL import Image

        out = np.asarray(Image.fromarray(arr).resize((size, size), Image.Resampling.BICUBIC))
        return out, [(WRONG_SIZE, f"patch is {w}x{h}: resized to {size}x{size}")]
    check_size_policy(policy)
    out = crop_centered(arr, w // 2, h // 2, size)
    how = []
    if w > size or h > size:
        how.append("centre-cropped")
    if w < size or h < size:
        how.append("black-padded")
    return out, [(WRONG_SIZE, f"patch is {w}x{h}: {' and '.join(how)} to {size}x{size}")]


def crop_centered(image: np.ndarray, x: int, y: int, size: int = PATCH_SIZE) -> np.ndarray:
    """The ``size`` x ``size`` window centred on column ``x``, row ``y``; black where it leaves the image."""
    h, w = image.shape[:2]
    x0, y0 = int(x) - size // 2, int(y) - size // 2
    out = np.zeros((size, size, 3), dtype=np.uint8)
    sx0, sx1 = max(x0, 0), min(x0 + size, w)
    sy0, sy1 = max(y0, 0), min(y0 + size, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1, :3]
    return out


# -------------------------------------------------------------------------------------------- reading


def _openslide():
    try:
        import openslide
    except ImportError:
        return None
    return openslide


def _needs_openslide(path: Path, why: str) -> ImageProblem:
    return ImageProblem(
        UNSUPPORTED_IMAGE,
        f"{why}: reading it needs openslide (pip install 'mitotype[wsi]' plus the OpenSlide library)",
    )


def _decode_pil(data: bytes, suffix: str) -> tuple[np.ndarray, list[Note]]:
    from PIL import Image

    if not data:
        raise ImageProblem(CORRUPT_IMAGE, "empty file (0 bytes)")
    if data.startswith(_PNG_MAGIC) and data.rfind(b"IEND") < 0:
        raise ImageProblem(CORRUPT_IMAGE, "truncated PNG (no IEND chunk)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            arr, notes = pil_to_rgb(image)
            return arr, notes + pages_note(image)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        if suffix in TIFF_SUFFIXES:
            return _decode_tifffile(io.BytesIO(data))
        # PIL names its in-memory buffer (<_io.BytesIO object at 0x...>): say what failed instead
        reason = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(exc)).strip() or type(exc).__name__
        raise ImageProblem(CORRUPT_IMAGE, f"cannot decode image ({reason})") from None


def _decode_tifffile(source) -> tuple[np.ndarray, list[Note]]:
    import tifffile

    try:
        with tifffile.TiffFile(source) as tif:
            page = tif.series[0].levels[0] if tif.series else tif.pages[0]
            if int(np.prod(page.shape)) > MAX_WHOLE_IMAGE_PIXELS * 4:
                raise ImageProblem(UNSUPPORTED_IMAGE, f"TIFF of shape {page.shape} is too large to read")
            arr = page.asarray()
    except ImageProblem:
        raise
    except Exception as exc:  # tifffile raises many types for broken files
        raise ImageProblem(CORRUPT_IMAGE, f"cannot decode TIFF ({type(exc).__name__}: {exc})") from None
    return array_to_rgb(arr)


def decode_patch_bytes(data: bytes, suffix: str = ".png", size: int = PATCH_SIZE,
                       policy: str = DEFAULT_SIZE_POLICY) -> tuple[np.ndarray, list[Note]]:
    """The bytes of a patch file as a ``size`` x ``size`` RGB array plus the warnings found."""
    arr, notes = _decode_pil(data, suffix.lower())
    arr, size_notes = fit_to_size(arr, size, policy)
    return arr, notes + size_notes


def decode_patch_file(path: str | Path, size: int = PATCH_SIZE, policy: str = DEFAULT_SIZE_POLICY
                      ) -> tuple[np.ndarray, list[Note]]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageProblem(CORRUPT_IMAGE, f"cannot read file ({exc.strerror or exc})") from None
    return decode_patch_bytes(data, path.suffix, size, policy)


def image_header(path: str | Path) -> tuple[int, int, str]:
    """``(width, height, mode)`` of an image from its header only (no pixel decoding)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in WSI_SUFFIXES:
        openslide = _openslide()
        if openslide is None:
            raise _needs_openslide(path, "whole-slide image")
        try:
            with openslide.OpenSlide(str(path)) as slide:
                w, h = slide.dimensions
        except Exception as exc:
            raise ImageProblem(CORRUPT_IMAGE, f"openslide cannot open it ({exc})") from None
        return int(w), int(h), "RGBA"
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size[0], image.size[1], image.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if suffix not in TIFF_SUFFIXES:
            raise ImageProblem(CORRUPT_IMAGE, f"cannot read image header ({exc})") from None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.series[0].levels[0] if tif.series else tif.pages[0]
            axes, shape = page.axes, page.shape
    except Exception as exc:
        raise ImageProblem(CORRUPT_IMAGE, f"cannot read TIFF header ({type(exc).__name__}: {exc})") from None
    h, w = shape[axes.index("Y")], shape[axes.index("X")]
    return int(w), int(h), "RGB" if "S" in axes else "L"


def read_image(path: str | Path) -> tuple[np.ndarray, list[Note]]:
    """A whole (non-WSI) image as uint8 HxWx3 RGB."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in WSI_SUFFIXES:
        raise _needs_openslide(path, "whole-slide image (read by region, not whole)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageProblem(CORRUPT_IMAGE, f"cannot read file ({exc.strerror or exc})") from None
    if suffix in TIFF_SUFFIXES:
        return _decode_tifffile(io.BytesIO(data))
    return _decode_pil(data, suffix)


def _is_pyramid(path: Path) -> bool:
    """Whether a TIFF holds an image pyramid (a whole-slide image written as generic tiled TIFF)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return bool(tif.series) and len(tif.series[0].levels) > 1
    except Exception:  # unreadable: the decoder that follows reports it
        return False


def _use_regions(path: Path) -> bool:
    """Whether crops of ``path`` are read by region (openslide) instead of decoding it whole: whole-slide
    formats, pyramidal TIFFs when openslide is installed, and TIFFs too large to decode whole."""
    suffix = path.suffix.lower()
    if suffix in WSI_SUFFIXES:
        return True
    if suffix in TIFF_SUFFIXES:
        if _openslide() is not None and _is_pyramid(path):
            return True
        w, h, _ = image_header(path)
        if w * h > MAX_WHOLE_IMAGE_PIXELS:
            if _openslide() is None:
                raise _needs_openslide(path, f"TIFF of {w}x{h} pixels is too large to read whole")
            return True
    return False


def _read_region(slide, x: int, y: int, size: int) -> np.ndarray:
    rgba = np.asarray(slide.read_region((int(x) - size // 2, int(y) - size // 2), 0, (size, size)))
    rgb, _ = _composite_black(rgba[..., :3], rgba[..., 3])  # outside the slide: transparent -> black
    return rgb


def read_crops(path: str | Path, centres: Sequence[tuple[int, int]], size: int = PATCH_SIZE
               ) -> tuple[list[np.ndarray], list[Note]]:
    """``size`` x ``size`` crops centred on each ``(x, y)`` of one larger image, decoding it once."""
    path = Path(path)
    if _use_regions(path):
        openslide = _openslide()
        if openslide is None:
            raise _needs_openslide(path, "whole-slide image")
        try:
            with openslide.OpenSlide(str(path)) as slide:
                return [_read_region(slide, x, y, size) for x, y in centres], []
        except ImageProblem:
            raise
        except Exception as exc:
            raise ImageProblem(CORRUPT_IMAGE, f"openslide cannot read it ({exc})") from None
    image, notes = read_image(path)
    return [crop_centered(image, x, y, size) for x, y in centres], notes


def load_patch(record: FigureRecord, size: int = PATCH_SIZE, policy: str = DEFAULT_SIZE_POLICY) -> np.ndarray:
    """The figure's pixels as uint8 ``(size, size, 3)`` RGB; :class:`DataError` naming the file if unusable.

    Warnings (conversions) are not repeated here: the readers report them.
    """
    check_size_policy(policy)
    try:
        if record.is_crop:
            crops, _ = read_crops(record.image, [(int(record.x), int(record.y))], size)  # type: ignore[arg-type]
            return crops[0]
        return decode_patch_file(record.image, size, policy)[0]
    except ImageProblem as exc:
        raise DataError(f"{record.image}: {exc.message} [{exc.kind}]") from None


# ------------------------------------------------------------------------------------------ checking


@dataclass
class ImageCheck:
    """What a reader learns about one image file: its size, a content hash, warnings or an error."""

    width: int | None = None
    height: int | None = None
    digest: str | None = None
    notes: list[Note] = field(default_factory=list)
    error: ImageProblem | None = None


def check_image(path: str | Path, *, full: bool, crop: bool, size: int = PATCH_SIZE,
                policy: str = DEFAULT_SIZE_POLICY) -> ImageCheck:
    """Check one image as a reader does: ``full`` decodes every pixel, else only the header is read.

    The digest is of the decoded pixels when ``full`` (so re-encoded copies are found), else of the
    file's bytes (whole-slide images: none).
    """
    path = Path(path)
    result = ImageCheck()
    try:
        if crop:
            w, h, mode = image_header(path)
            result.width, result.height = w, h
            if path.suffix.lower() not in WSI_SUFFIXES:
                if full and w * h <= MAX_WHOLE_IMAGE_PIXELS:
                    image, result.notes = read_image(path)
                    result.digest = bytes_digest(image.tobytes() + str(image.shape).encode())
                else:
                    if (note := mode_note(mode)) is not None:
                        result.notes = [(CONVERTED_MODE, note)]
                    result.digest = file_digest(path)
            return result
        data = path.read_bytes()
        if full:
            arr, result.notes = decode_patch_bytes(data, path.suffix, size, policy)
            if (colour := blank_colour(arr)) is not None:
                result.notes.append((BLANK_IMAGE, blank_message(colour)))
            result.digest = bytes_digest(arr.tobytes())
            result.width = result.height = size
            return result
        from PIL import Image

        if data.startswith(_PNG_MAGIC) and data.rfind(b"IEND") < 0:
            raise ImageProblem(CORRUPT_IMAGE, "truncated PNG (no IEND chunk)")
        try:
            with Image.open(io.BytesIO(data)) as image:
                (w, h), mode = image.size, image.mode
                result.notes.extend(pages_note(image))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            w, h, mode = image_header(path)
        result.width, result.height = w, h
        if (note := mode_note(mode)) is not None:
            result.notes.append((CONVERTED_MODE, note))
        if (w, h) != (size, size):
            _, size_notes = fit_to_size(np.zeros((h, w, 3), np.uint8), size, policy)
            result.notes.extend(size_notes)
        result.digest = bytes_digest(data)
    except ImageProblem as exc:
        result.error = exc
    except OSError as exc:
        result.error = ImageProblem(CORRUPT_IMAGE, f"cannot read file ({exc.strerror or exc})")
    return result


# ------------------------------------------------------------------------------------- bulk decoding


def decode_patches(records: Sequence[FigureRecord], out: np.ndarray, *, size: int = PATCH_SIZE,
                   policy: str = DEFAULT_SIZE_POLICY, workers: int | None = None) -> None:
    """Decode every record into ``out[i]`` (e.g. a memmap) with a thread pool.

    Patch files are decoded in chunks; crops are grouped by their larger image so that each is decoded
    once. PIL and zlib release the GIL, so threads scale with cores. Raises :class:`DataError` naming
    the first file that cannot be decoded.
    """
    check_size_policy(policy)
    if out.shape[0] != len(records) or out.shape[1:] != (size, size, 3):
        raise ValueError(f"out has shape {out.shape}, expected {(len(records), size, size, 3)}")
    patches = [i for i, r in enumerate(records) if not r.is_crop]
    by_image: dict[Path, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.is_crop:
            by_image[Path(r.image)].append(i)

    def decode_chunk(indices: list[int]) -> None:
        for i in indices:
            path = records[i].image
            try:
                out[i] = decode_patch_file(path, size, policy)[0]
            except ImageProblem as exc:
                raise DataError(f"{path}: {exc.message} [{exc.kind}]") from None

    def decode_crops(path: Path, indices: list[int]) -> None:
        centres = [(int(records[i].x), int(records[i].y)) for i in indices]  # type: ignore[arg-type]
        try:
            crops, _ = read_crops(path, centres, size)
        except ImageProblem as exc:
            raise DataError(f"{path}: {exc.message} [{exc.kind}]") from None
        for i, crop in zip(indices, crops):
            out[i] = crop

    n_workers = workers or default_workers()
    chunk = max(8, min(256, len(patches) // (n_workers * 8) or 8))
    with ThreadPoolExecutor(n_workers) as pool:
        futures = [pool.submit(decode_chunk, patches[s : s + chunk]) for s in range(0, len(patches), chunk)]
        futures += [pool.submit(decode_crops, p, idx) for p, idx in by_image.items()]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for f in done:
            if f.exception() is not None:
                for other in futures:
                    other.cancel()
                raise f.exception()  # type: ignore[misc]
