"""One slide, from its file and its detector's points to what a pathologist reads: per figure p(atypical) and
class, per slide the counts, the atypical fraction with its 95 % Wilson interval, tissue area, figures per
mm² and the hotspot.

Steps: resolve the slide's µm/px (the file's, else ``--mpp``; none is an error), select the detector's mitotic
figures, convert their coordinates to level-0 pixels, set aside those outside the slide (counted; all of them
outside is an error that names the likely unit mix-up), read the 32 µm field of each (:mod:`.fields`),
classify, then count.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mitotype.data.labels import CLASS_NAMES
from mitotype.errors import DataError
from mitotype.slides.choices import POINT_FORMATS, UNITS
from mitotype.slides.classify import Classifier
from mitotype.slides.fields import read_fields
from mitotype.slides.points import PointSet, resolve_units, select_points, to_level0
from mitotype.slides.resolution import Resolution, implausible
from mitotype.slides.stats import DEFAULT_HOTSPOT_MM2, Hotspot, find_hotspot, wilson_interval
from mitotype.slides.tissue import tissue_area_mm2, tissue_mask
from mitotype.slides.wsi import BACKENDS, Slide

THUMBNAIL_UM_PER_PX = 8.0
THUMBNAIL_SIDE = (512, 2048)
"""The thumbnail the tissue mask is computed on (and the report shows, reduced): about 8 µm per pixel (a 20 mm
section in 2,500 px), at least 512 and at most 2,048 px on its longer side."""

COHORT_COLUMNS = (
    "slide", "status", "figures", "atypical", "normal", "atypical_fraction", "atypical_fraction_ci_low",
    "atypical_fraction_ci_high", "hotspot_figures", "hotspot_atypical", "hotspot_normal",
    "hotspot_atypical_fraction", "hotspot_mm2", "hotspot_x_um", "hotspot_y_um", "hotspot_width_um",
    "hotspot_height_um", "tissue_mm2", "figures_per_mm2", "points_read", "points_kept", "points_outside", "mpp",
    "mpp_source", "width_px", "height_px", "threshold", "model", "tta", "slide_path", "points_path", "problem",
)
"""The columns of ``cohort.csv``, one row per slide (empty where a value does not exist: no fraction of 0)."""
FIGURE_COLUMNS = ("slide", "figure", "x_px", "y_px", "x_um", "y_um", "detector_score", "detector_class",
                  "p_atypical", "class", "threshold", "in_hotspot")
"""The columns of ``figures.csv``, one row per classified figure."""


@dataclass(frozen=True)
class SlideOptions:
    """How slides and points are read and counted: every option a result depends on (the model aside)."""

    mpp: float | None = None
    """µm per pixel for slides whose files state none (or an implausible one)."""
    units: str = "auto"
    points_format: str = "auto"
    min_probability: float | None = None
    point_names: tuple[str, ...] = ()
    hotspot_area_mm2: float = DEFAULT_HOTSPOT_MM2
    tta: bool = False
    threshold: float | None = None
    backend: str = "auto"

    def __post_init__(self) -> None:
        """Refuse what the command line's parser would (so a program's slip fails once, not as a silent 0 or as
        every slide failing alike); one name given as a string is the one-name tuple meant."""
        if self.mpp is not None and not (math.isfinite(self.mpp) and self.mpp > 0):
            raise DataError(f"--mpp must be a positive number of µm per pixel, got {self.mpp}")
        if not (math.isfinite(self.hotspot_area_mm2) and self.hotspot_area_mm2 > 0):
            raise DataError(f"the hotspot area must be a positive number of mm², got {self.hotspot_area_mm2}")
        choosing = (("units", self.units, UNITS), ("points_format", self.points_format, POINT_FORMATS),
                    ("backend", self.backend, BACKENDS))
        for option, value, choices in choosing:
            if value not in choices:
                raise DataError(f"{option} {value!r} is not one of {list(choices)}")
        for option, value in (("min_probability", self.min_probability), ("threshold", self.threshold)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                      or not 0.0 <= value <= 1.0):
                raise DataError(f"{option} must be a number in [0, 1], got {value!r}")
        names = (self.point_names,) if isinstance(self.point_names, str) else tuple(self.point_names)
        object.__setattr__(self, "point_names", names)

    def identity(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SlideAnalysis:
    """What one slide gave: its cohort row, its figures and what the pathologist's files are made from."""

    row: dict[str, Any]
    figures: list[dict[str, Any]]
    crops: np.ndarray
    thumbnail: np.ndarray
    hotspot_px: tuple[float, float, float, float] | None
    """The hotspot as (left, top, right, bottom) level-0 pixels."""
    notes: list[str] = field(default_factory=list)


def slide_resolution(slide: Slide, mpp: float | None) -> Resolution:
    """The slide's own µm/px when it states a plausible one, else ``mpp``; else a one-line error."""
    stated = slide.resolution
    problem = implausible(stated) if stated is not None else None
    if stated is not None and problem is None:
        return stated
    if mpp is not None:
        return Resolution(mpp, mpp, "--mpp")
    why = problem or "the file states no resolution (no OpenSlide mpp, TIFF resolution tags or OME PhysicalSize)"
    raise DataError(f"{slide.path}: {why}; give the scan's micrometres per pixel with --mpp (0.25 at 40x)")


def _outside_message(points: PointSet, units: str, slide: Slide, resolution: Resolution, x: np.ndarray) -> str:
    w, h = slide.dimensions
    width_mm, height_mm = w * resolution.mpp_x / 1000, h * resolution.mpp_y / 1000
    largest = float(np.max(np.abs(points.x))) if len(points) else 0.0
    hint = "is it this slide's points file?"
    per_mm = {"mm": 1.0, "um": 1000.0}.get(units)
    if per_mm is not None and largest > 20 * width_mm * per_mm:
        hint = "they look like pixels: pass --units px"
    elif units == "px" and largest < width_mm * 1.5:
        hint = "they look like millimetres: pass --units mm"
    return (f"{points.source}: all {len(x)} points lie outside {slide.path.name} ({w} x {h} px, "
            f"{width_mm:.2f} x {height_mm:.2f} mm) when read as {units} (x up to {largest:g}); {hint}")


def _value(x: float | None, digits: int = 6) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def analyse_slide(name: str, slide: Slide, points: PointSet, options: SlideOptions,
                  classifier: Callable[[], Classifier]) -> SlideAnalysis:
    """Everything one slide gives (``classifier`` is called only when the slide has figures to classify)."""
    resolution = slide_resolution(slide, options.mpp)
    notes = list(points.notes)
    if resolution.source == "--mpp" and slide.resolution is not None:
        notes.append(f"{name}: {implausible(slide.resolution)}; used --mpp {options.mpp}")
    keep = select_points(points, options.min_probability, options.point_names)
    units = resolve_units(points, options.units, slide_states_resolution=resolution.source != "--mpp")
    x = to_level0(points.x[keep], units, resolution.mpp_x)
    y = to_level0(points.y[keep], units, resolution.mpp_y)
    score = points.score[keep]
    names = [n for n, k in zip(points.names, keep) if k]
    w, h = slide.dimensions
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    if len(x) and not inside.any():
        raise DataError(_outside_message(points, units, slide, resolution, x))
    outside = int((~inside).sum())
    if outside:
        notes.append(f"{name}: {outside} of {len(x)} point(s) lie outside the slide ({w} x {h} px): not counted")
    x, y, score = x[inside], y[inside], score[inside]
    names = [n for n, i in zip(names, inside) if i]

    crops = read_fields(slide, resolution.mpp, x, y)
    model = classifier() if len(x) else None
    p = model.predict(crops) if model is not None else np.zeros(0)
    threshold = model.threshold if model is not None else None
    atypical = p >= threshold if threshold is not None else np.zeros(0, dtype=bool)

    longest_um = max(w * resolution.mpp_x, h * resolution.mpp_y)
    thumbnail = slide.thumbnail(int(np.clip(longest_um / THUMBNAIL_UM_PER_PX, *THUMBNAIL_SIDE)))
    um_per_thumb_px = w * resolution.mpp_x / thumbnail.shape[1]
    tissue = tissue_area_mm2(tissue_mask(thumbnail, um_per_thumb_px), um_per_thumb_px)

    x_um, y_um = x * resolution.mpp_x, y * resolution.mpp_y
    hotspot = find_hotspot(x_um, y_um, atypical, options.hotspot_area_mm2)
    in_hotspot = hotspot.contains(x_um, y_um) if hotspot is not None else np.zeros(len(x), dtype=bool)
    figures = [{"slide": name, "figure": i + 1, "x_px": round(float(x[i]), 2), "y_px": round(float(y[i]), 2),
                "x_um": round(float(x_um[i]), 2), "y_um": round(float(y_um[i]), 2),
                "detector_score": _value(score[i]), "detector_class": names[i], "p_atypical": float(p[i]),
                "class": CLASS_NAMES[int(atypical[i])], "threshold": threshold,
                "in_hotspot": bool(in_hotspot[i])} for i in range(len(x))]
    row = summary_row(name, atypical, hotspot, tissue, options)
    row.update(points_read=len(points), points_kept=int(keep.sum()), points_outside=outside,
               mpp=round(resolution.mpp, 6), mpp_source=resolution.source, width_px=w, height_px=h,
               threshold=threshold, model=model.name if model is not None else None, tta=options.tta,
               slide_path=str(slide.path), points_path=str(points.source))
    box = None
    if hotspot is not None:
        box = (hotspot.x / resolution.mpp_x, hotspot.y / resolution.mpp_y,
               (hotspot.x + hotspot.width) / resolution.mpp_x, (hotspot.y + hotspot.height) / resolution.mpp_y)
    return SlideAnalysis(row, figures, crops, thumbnail, box, notes)


def summary_row(name: str, atypical: np.ndarray, hotspot: Hotspot | None, tissue_mm2: float,
                options: SlideOptions) -> dict[str, Any]:
    """The counting columns of a slide's cohort row (no fraction, no interval, no hotspot without figures)."""
    n, k = len(atypical), int(np.sum(atypical))
    interval = wilson_interval(k, n)
    row: dict[str, Any] = {c: None for c in COHORT_COLUMNS}
    row.update(slide=name, status="ok", figures=n, atypical=k, normal=n - k,
               atypical_fraction=_value(k / n) if n else None,
               atypical_fraction_ci_low=_value(interval[0]) if interval else None,
               atypical_fraction_ci_high=_value(interval[1]) if interval else None,
               hotspot_figures=hotspot.figures if hotspot else 0, hotspot_atypical=hotspot.atypical if hotspot else 0,
               hotspot_normal=hotspot.figures - hotspot.atypical if hotspot else 0,
               hotspot_atypical_fraction=_value(hotspot.atypical_fraction) if hotspot else None,
               hotspot_mm2=round(options.hotspot_area_mm2, 4),
               tissue_mm2=round(tissue_mm2, 4), figures_per_mm2=round(n / tissue_mm2, 4) if tissue_mm2 > 0 else None)
    if hotspot is not None:
        row.update(hotspot_x_um=round(hotspot.x, 1), hotspot_y_um=round(hotspot.y, 1),
                   hotspot_width_um=round(hotspot.width, 1), hotspot_height_um=round(hotspot.height, 1))
    return row
