"""Whole-slide images for tests: real AMi-Br figures placed at known points on a slide-like background, written
as tiled pyramidal TIFFs with tifffile (into tmp_path, never into the repository).

A uniquely named module (not ``conftest``) so that tests of several folders import it directly.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

GLASS = (236, 234, 238)
"""The background of a scanned slide: almost white, almost unsaturated."""
TISSUE = (214, 160, 196)
"""A flat pink H&E-like stroma colour for the tissue region."""


@dataclass
class Figure:
    """One real figure on a test slide: its patch, label, AMi-Br id and centre in level-0 pixels."""

    patch: np.ndarray
    label: int
    uid: str
    x: int
    y: int


def amibr_patches(shared_data: Path, n: int, seed: int = 0, atypical_share: float = 0.4
                  ) -> list[tuple[np.ndarray, int, str]]:
    """``n`` real AMi-Br patches (uint8 128x128x3), about ``atypical_share`` of them atypical, drawn by ``seed``."""
    rng = np.random.default_rng(seed)
    root = shared_data / "amibr" / "patches"
    n_atyp = round(n * atypical_share)
    chosen: list[tuple[Path, int]] = []
    for folder, label, count in (("atypical", 1, n_atyp), ("normal", 0, n - n_atyp)):
        files = sorted((root / folder).glob("*.png"))
        picks = rng.choice(len(files), size=count, replace=False)
        chosen += [(files[i], label) for i in sorted(picks)]
    order = rng.permutation(len(chosen))
    out = []
    for i in order:
        path, label = chosen[i]
        with Image.open(path) as image:
            out.append((np.asarray(image.convert("RGB")), label, path.stem))
    return out


def background(width: int, height: int, tissue: tuple[int, int, int, int] | None, seed: int = 0) -> np.ndarray:
    """Glass with a little noise, and a pink tissue rectangle ``(x0, y0, x1, y1)`` in it."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = GLASS
    if tissue is not None:
        x0, y0, x1, y1 = tissue
        image[y0:y1, x0:x1] = TISSUE
    noise = rng.integers(-4, 5, (height, 1, 3), dtype=np.int16)  # row streaks, cheap and not flat
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def place(image: np.ndarray, figures: list[Figure]) -> np.ndarray:
    """Paste each figure's patch so that its centre is at (x, y), with the crop convention of the readers:
    the window ``[x - 64, x + 64)``."""
    for f in figures:
        h, w = f.patch.shape[:2]
        image[f.y - h // 2 : f.y - h // 2 + h, f.x - w // 2 : f.x - w // 2 + w] = f.patch
    return image


def downscale(patch: np.ndarray, factor: int) -> np.ndarray:
    """A patch as a scanner at ``factor`` times the pixel size would have recorded it."""
    h, w = patch.shape[:2]
    return np.asarray(Image.fromarray(patch).resize((w // factor, h // factor), Image.Resampling.BOX))


def write_pyramid(path: Path, image: np.ndarray, mpp: float | None, levels: int = 3, tile: int = 256,
                  subifds: bool = False, compression: str | None = "deflate") -> Path:
    """A tiled pyramidal TIFF (``levels`` levels, each half the last) with resolution tags in pixels per
    centimetre (``mpp`` None: no resolution). ``subifds``: the reduced levels as SubIFDs of the first (as
    OME-TIFF and many converters write them) instead of pages of the main chain (as OpenSlide reads them)."""
    pyramid = [image]
    for _ in range(levels - 1):
        last = pyramid[-1]
        h, w = last.shape[0] // 2 * 2, last.shape[1] // 2 * 2
        pyramid.append(last[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8))
    with tifffile.TiffWriter(path) as tif:
        for k, level in enumerate(pyramid):
            options: dict = {"tile": (tile, tile), "photometric": "rgb", "compression": compression}
            if mpp is not None:
                per_cm = 1e4 / (mpp * image.shape[1] / level.shape[1])
                options.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
            if k == 0 and subifds:
                options["subifds"] = levels - 1
            if k > 0:
                options["subfiletype"] = 1
            tif.write(level, **options)
    return path


def grid_centres(width: int, height: int, n: int, margin: int = 96, step: int = 160) -> list[tuple[int, int]]:
    """``n`` centres on a regular grid inside the slide, far enough apart that patches never overlap."""
    cols = (width - 2 * margin) // step + 1
    centres = [(margin + (i % cols) * step, margin + (i // cols) * step) for i in range(n)]
    if centres and centres[-1][1] > height - margin:
        raise ValueError(f"{n} figures do not fit on a {width}x{height} slide")
    return centres


def track1_json(path: Path, points_px: list[tuple[float, float]], mpp: float, probabilities: list[float],
                threshold: float = 0.5) -> Path:
    """A MIDOG 2025 Track 1 container output for these points, in millimetres as the container writes them."""
    points = [{"name": "mitotic figure" if p >= threshold else "non-mitotic figure",
               "point": [x * mpp / 1000, y * mpp / 1000, 0.0], "probability": p}
              for (x, y), p in zip(points_px, probabilities)]
    path.write_text(json.dumps({"name": "Points of interest", "type": "Multiple points", "points": points,
                                "version": {"major": 1, "minor": 0}}, indent=1))
    return path


def coords_csv(path: Path, image: str, points: list[tuple[int, int]], labels: list[str] | None = None) -> Path:
    """A CSV of image, x, y (and label when given): figures on a larger image."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "x", "y", *(["label"] if labels else [])])
        for i, (x, y) in enumerate(points):
            writer.writerow([image, x, y, *([labels[i]] if labels else [])])
    return path
