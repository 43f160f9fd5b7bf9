"""The models' input contract on a slide: the 32 µm field around each figure, as a 128 px patch.

The classifiers were trained on 128 x 128 patches at about 0.25 µm/px (MIDOG, AMi-Br), i.e. a field of
:data:`FIELD_UM` = 32 µm. On a slide of another resolution the same field is cut and resampled to 128 px, so
that a figure on a 20x slide (0.5 µm/px: a 64 px field, enlarged) or on an 80x one (0.125 µm/px: a 256 px
field, reduced) has the size the model saw in training. The field is read from the coarsest pyramid level
that is still at least as fine as 0.25 µm/px (less to decode, and the reduction then starts from the
scanner's own downsampled level); a slide coarser than that is read at level 0 and enlarged.

The window is the one the readers cut around a figure at ``(x, y)``: ``[x - field/2, x + field/2)`` in
level-0 pixels, black where it leaves the slide. At 0.25 µm/px that is exactly ``crop_centered``'s window, so
a figure gives the same pixels, and the same p(atypical), whether cut beforehand or read here.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from mitotype.data.patches import PATCH_SIZE
from mitotype.slides.wsi import Slide

TARGET_MPP = 0.25
"""µm per pixel of the patches the models were trained on."""
FIELD_UM = PATCH_SIZE * TARGET_MPP
"""The side of the field around a figure, in micrometres (32 µm)."""
SNAP_TOLERANCE = 1e-3
"""A field within this many pixels of the patch size is copied pixel for pixel (no resampling)."""


def field_level(slide: Slide, mpp: float) -> int:
    """The coarsest level whose pixels are still no larger than :data:`TARGET_MPP` (level 0 if none is)."""
    best = 0
    for level in range(len(slide.level_dimensions)):
        dx, dy = slide.downsample(level)
        if mpp * max(dx, dy) <= TARGET_MPP * (1 + 1e-3):
            best = level
    return best


def read_fields(slide: Slide, mpp: float, x: np.ndarray, y: np.ndarray, size: int = PATCH_SIZE) -> np.ndarray:
    """``N x size x size x 3`` uint8: the :data:`FIELD_UM` field centred on each level-0 point ``(x[i], y[i])``
    of a slide whose level 0 has ``mpp`` µm/px, resampled to ``size`` px where its pixels differ."""
    level = field_level(slide, mpp)
    dx, dy = slide.downsample(level)
    field_x, field_y = FIELD_UM / (mpp * dx), FIELD_UM / (mpp * dy)  # the field in pixels of that level
    out = np.zeros((len(x), size, size, 3), np.uint8)
    exact = abs(field_x - size) < SNAP_TOLERANCE and abs(field_y - size) < SNAP_TOLERANCE
    # neighbours in reading order share tiles: a tiled reader decodes each tile once while it is cached
    order = np.lexsort((np.asarray(x), np.asarray(y) // 512))
    for i in order:
        left, top = x[i] / dx - field_x / 2, y[i] / dy - field_y / 2
        if exact:
            out[i] = slide.read_region(level, round(left), round(top), size, size)
            continue
        x0, y0 = int(np.floor(left)) - 2, int(np.floor(top)) - 2  # a margin for the resampling kernel
        w, h = int(np.ceil(left + field_x)) + 2 - x0, int(np.ceil(top + field_y)) + 2 - y0
        region = Image.fromarray(slide.read_region(level, x0, y0, w, h))
        box = (left - x0, top - y0, left - x0 + field_x, top - y0 + field_y)
        out[i] = np.asarray(region.resize((size, size), Image.Resampling.BICUBIC, box=box))
    return out
