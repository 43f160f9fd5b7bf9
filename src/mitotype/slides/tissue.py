"""How much tissue a slide holds, from a tissue mask on its thumbnail (scikit-image).

Stained tissue is coloured, glass is not: a pixel is tissue when its HSV saturation is above a threshold chosen
by Otsu's method on the thumbnail (kept within :data:`SATURATION_RANGE`, so that a slide that is almost all
glass or all tissue is not split in two arbitrary halves) and it is not black (the padding outside a scan).
Small specks (dust, debris) and small holes (lumina, fat vacuoles inside the tissue) are then removed. The mask
is what figures per mm² are counted over.
"""

from __future__ import annotations

import numpy as np

SATURATION_RANGE = (0.04, 0.12)
"""Bounds of the saturation threshold: glass scans at 0-0.03, the palest stained tissue at about 0.1."""
MIN_VALUE = 0.12
"""Darker pixels (black padding, scanner borders) are never tissue."""
SPECK_UM2 = 20_000.0
"""Tissue pieces and holes smaller than this (about 140 x 140 µm) are noise, not tissue or background."""


def tissue_mask(thumbnail: np.ndarray, um_per_px: float) -> np.ndarray:
    """A boolean mask of the tissue on an RGB ``thumbnail`` whose pixels span ``um_per_px`` micrometres."""
    from skimage.color import rgb2hsv
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_holes, remove_small_objects

    hsv = rgb2hsv(np.asarray(thumbnail[..., :3], dtype=np.uint8))
    saturation, value = hsv[..., 1], hsv[..., 2]
    lo, hi = SATURATION_RANGE
    try:
        cut = float(threshold_otsu(saturation))
    except ValueError:  # a single-colour thumbnail
        cut = lo
    mask = (saturation > min(max(cut, lo), hi)) & (value > MIN_VALUE)
    speck = max(1, int(SPECK_UM2 / (um_per_px * um_per_px)))
    mask = remove_small_objects(mask, max_size=speck)
    return remove_small_holes(mask, max_size=speck)


def tissue_area_mm2(mask: np.ndarray, um_per_px: float) -> float:
    """The area of ``mask`` in mm²."""
    return float(mask.sum()) * um_per_px * um_per_px / 1e6
