"""Counting statistics of a slide: the atypical fraction's interval and the mitotic hotspot.

The hotspot is the region of a set area holding the most mitotic figures, as pathologists count mitoses in
their "hotspot" of 10 high-power fields. Its shape here is a 4:3 rectangle, landscape or portrait, the shape
of a microscope camera's field and of the regions the MIDOG datasets were annotated in (2 mm², 1.63 x 1.22 mm);
veterinary pathology's standard area is 2.37 mm² (10 HPF of field number 22), the default. Among rectangles
holding equally many figures the first in reading order is taken (landscape before portrait, then left to
right, top to bottom): the choice never looks at the figures' classes, so it cannot favour atypical ones. The
rectangle is then centred on the figures it holds, which changes neither them nor their count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from mitotype.slides.choices import DEFAULT_HOTSPOT_MM2

HOTSPOT_ASPECT = 4 / 3


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion ``k / n`` (``None`` when ``n`` is 0): unlike ``p ± z·se``
    it stays inside [0, 1] and keeps its coverage for the handful of figures a slide may hold."""
    if n <= 0:
        return None
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Hotspot:
    """A rectangle in micrometres (level-0 origin) and the figures in it."""

    x: float
    """Left edge, µm."""
    y: float
    """Top edge, µm."""
    width: float
    height: float
    figures: int
    atypical: int

    @property
    def area_mm2(self) -> float:
        return self.width * self.height / 1e6

    @property
    def atypical_fraction(self) -> float | None:
        return self.atypical / self.figures if self.figures else None

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Which points (µm) lie in the rectangle (left and top edges inclusive)."""
        return (x >= self.x) & (x < self.x + self.width) & (y >= self.y) & (y < self.y + self.height)


def hotspot_size(area_mm2: float) -> tuple[float, float]:
    """Width and height in µm of a landscape 4:3 rectangle of ``area_mm2``."""
    if not math.isfinite(area_mm2) or area_mm2 <= 0:
        raise ValueError(f"hotspot area must be a positive number of mm², got {area_mm2}")
    height = math.sqrt(area_mm2 / HOTSPOT_ASPECT) * 1000
    return height * HOTSPOT_ASPECT, height


def _best_window(x: np.ndarray, y: np.ndarray, width: float, height: float) -> tuple[int, float, float]:
    """(count, left, top) of the first width x height window holding the most points: some best window has a
    point on its left edge and one on its top edge, so only those edges are tried."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    best = (0, 0.0, 0.0)
    ends = np.searchsorted(xs, xs + width, side="left")
    for i in range(len(xs)):
        if ends[i] - i <= best[0]:
            continue  # this column cannot beat the best so far
        column = np.sort(ys[i : ends[i]])
        counts = np.searchsorted(column, column + height, side="left") - np.arange(len(column))
        k = int(np.argmax(counts))
        if counts[k] > best[0]:
            best = (int(counts[k]), float(xs[i]), float(column[k]))
    return best


def find_hotspot(x_um: np.ndarray, y_um: np.ndarray, atypical: np.ndarray, area_mm2: float = DEFAULT_HOTSPOT_MM2
                 ) -> Hotspot | None:
    """The 4:3 rectangle of ``area_mm2`` (either orientation) holding the most figures; ``None`` without any."""
    x, y = np.asarray(x_um, dtype=np.float64), np.asarray(y_um, dtype=np.float64)
    atypical = np.asarray(atypical, dtype=bool)
    if len(x) == 0:
        return None
    width, height = hotspot_size(area_mm2)
    found = None
    for w, h in ((width, height), (height, width)):
        count, left, top = _best_window(x, y, w, h)
        if found is None or count > found[0]:
            found = (count, left, top, w, h)
    _, left, top, w, h = found  # type: ignore[misc]
    inside = (x >= left) & (x < left + w) & (y >= top) & (y < top + h)
    # centred on the figures it holds: the same figures, and no other (that would beat the maximum)
    cx, cy = (x[inside].min() + x[inside].max()) / 2, (y[inside].min() + y[inside].max()) / 2
    spot = Hotspot(cx - w / 2, cy - h / 2, w, h, 0, 0)
    members = spot.contains(x, y)
    if members.sum() < inside.sum():  # rounding at an edge: keep the window as found
        spot, members = Hotspot(left, top, w, h, 0, 0), inside
    return Hotspot(spot.x, spot.y, w, h, int(members.sum()), int((members & atypical).sum()))
