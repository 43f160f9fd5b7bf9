"""A detector's mitotic figures on a slide, from the files detectors and viewers write, as points.

Formats (``fmt``; ``auto`` tells them apart by suffix and content):

* ``track1``: the MIDOG 2025 Track 1 container output (``mitotic-figures.json``): ``{"type": "Multiple
  points", "points": [{"name": "mitotic figure" | "non-mitotic figure", "point": [x, y, z], "probability": p}]}``.
  Points are in millimetres when the image carried a resolution, else in pixels (units ``auto`` follows that
  rule against the slide). ``name`` says whether the detector's score passed its threshold.
* ``geojson``: a QuPath export (a FeatureCollection, one Feature, or a list of Features, in level-0 pixels):
  points (a MultiPoint gives each of its points) and detections or cells, whose centroid is used; region
  annotations (polygons that are not detections) are outlines, not figures, and are counted as skipped.
  ``classification.name`` is the point's name, a ``probability``/``score``/``confidence`` measurement its score.
* ``csv``: columns x and y (also ``coordinateX``, ``centroid_x``, QuPath's ``Centroid X µm``...), optionally a
  score, a class and the image or slide each row lies on (then one file serves a whole cohort). Level-0 pixels,
  or micrometres (millimetres) when the header says so or the user does.
* ``boxes``: a detector's JSON of bounding boxes, whose centres are the figures: a list of objects (or one
  under ``boxes``, ``detections``, ``predictions``, ``annotations`` or ``results``) with ``x1, y1, x2, y2`` (also
  ``xmin``...), ``box``/``xyxy`` ``[x1, y1, x2, y2]`` or COCO's ``bbox`` ``[x, y, width, height]``; or torchvision's
  ``{"boxes": [[x1, y1, x2, y2], ...], "scores": [...], "labels": [...]}``. Level-0 pixels.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mitotype.data.readers._common import find_column, read_table
from mitotype.errors import DataError
from mitotype.slides.choices import POINT_FORMATS, UNITS

POINT_SUFFIXES = (".json", ".geojson", ".csv")
TRACK1_MITOSIS = "mitotic figure"
"""The name the Track 1 container gives points above its detector's threshold."""
TRACK1_NAMES = (TRACK1_MITOSIS, "non-mitotic figure")
"""Every name the Track 1 container gives (below its threshold: ``non-mitotic figure``)."""

CSV_X = ("x", "coordinatex", "center_x", "centre_x", "cx", "centroid_x", "centroid x µm", "centroid x um",
         "centroid x px", "x_um", "x_µm", "x (µm)", "x_px", "x_mm", "pos_x")
CSV_Y = ("y", "coordinatey", "center_y", "centre_y", "cy", "centroid_y", "centroid y µm", "centroid y um",
         "centroid y px", "y_um", "y_µm", "y (µm)", "y_px", "y_mm", "pos_y")
CSV_SCORE = ("score", "probability", "confidence", "detector_score", "prob", "p")
CSV_NAME = ("name", "class", "classification", "label", "category")
CSV_IMAGE = ("slide", "image", "wsi", "filename", "file", "image_id", "path")
SCORE_KEYS = ("probability", "score", "confidence", "prob", "detection_score")
BOX_LISTS = ("boxes", "detections", "predictions", "annotations", "results", "objects")


@dataclass
class PointSet:
    """The points one file gives for one slide, in the file's own units, before any selection."""

    source: Path
    fmt: str
    x: np.ndarray
    y: np.ndarray
    score: np.ndarray
    """The detector's score per point (NaN where the file has none)."""
    names: list[str]
    """The detector's or viewer's class per point (``""`` where none)."""
    units: str
    """``px``, ``um``, ``mm``, or ``auto`` (Track 1: millimetres when the slide carries a resolution)."""
    slide: str | None = None
    """The slide the rows name (a CSV serving a cohort), ``None`` when the file is about one slide."""
    skipped: int = 0
    """Features that are not figures (region annotations), left out."""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.x)

    def digest(self) -> str:
        """A hash of what this file says about its slide: what a result computed from it depends on."""
        h = hashlib.sha256()
        h.update(f"{self.fmt}|{self.units}|{self.slide}|{len(self)}|".encode())
        for values in (self.x, self.y, self.score):
            h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
        h.update("\x00".join(self.names).encode())
        return h.hexdigest()


def _number(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise DataError(f"{where}: {value!r} is not a finite number")
    return number


def _score(item: dict[str, Any], where: str) -> float:
    for key in SCORE_KEYS:
        if item.get(key) is not None:
            return _number(item[key], f"{where}, {key}")
    return math.nan


def _point_set(path: Path, fmt: str, rows: Sequence[tuple[float, float, float, str]], units: str, **extra: Any
               ) -> PointSet:
    array = np.array([r[:3] for r in rows], dtype=np.float64).reshape(-1, 3)
    return PointSet(path, fmt, array[:, 0], array[:, 1], array[:, 2], [r[3] for r in rows], units, **extra)


# ------------------------------------------------------------------------------------------ Track 1


def _track1(path: Path, data: dict[str, Any]) -> PointSet:
    points = data.get("points")
    if not isinstance(points, list):
        raise DataError(f"{path}: a Track 1 file needs a list under 'points'")
    rows = []
    for i, item in enumerate(points, start=1):
        where = f"{path}, point {i}"
        coords = item.get("point") if isinstance(item, dict) else None
        if not isinstance(coords, list) or len(coords) < 2:
            raise DataError(f"{where}: expected \"point\": [x, y, z], found {coords!r}")
        rows.append((_number(coords[0], where), _number(coords[1], where), _score(item, where),
                     str(item.get("name", "") or "")))
    return _point_set(path, "track1", rows, "auto")


# ------------------------------------------------------------------------------------------ GeoJSON


def _ring_centroid(ring: Sequence[Sequence[float]]) -> tuple[float, float]:
    """The area centroid of a polygon ring (the mean of its vertices when it encloses no area)."""
    pts = np.asarray(ring, dtype=np.float64)[:, :2]
    if len(pts) > 1 and np.array_equal(pts[0], pts[-1]):
        pts = pts[:-1]
    x, y = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    area = cross.sum() / 2
    if abs(area) < 1e-9:
        return float(x.mean()), float(y.mean())
    return float(((x + x1) * cross).sum() / (6 * area)), float(((y + y1) * cross).sum() / (6 * area))


def _centres(geometry: dict[str, Any], where: str) -> list[tuple[float, float]]:
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    try:
        if kind == "Point":
            return [(_number(coords[0], where), _number(coords[1], where))]
        if kind == "MultiPoint":
            return [(_number(c[0], where), _number(c[1], where)) for c in coords]
        if kind == "Polygon":
            return [_ring_centroid(coords[0])]
        if kind == "MultiPolygon":
            return [_ring_centroid(max(coords, key=lambda poly: len(poly[0]))[0])]
        if kind == "LineString":
            return [_ring_centroid(coords)]
    except (TypeError, IndexError, ValueError):
        pass
    raise DataError(f"{where}: cannot read a {kind} geometry with coordinates {str(coords)[:60]}")


def _classification(properties: dict[str, Any]) -> str:
    value = properties.get("classification")
    if isinstance(value, dict):
        return str(value.get("name", "") or "")
    return str(value or properties.get("name", "") or "") if isinstance(value, str | None) else ""


def _measurement(properties: dict[str, Any]) -> float:
    found: dict[str, Any] = {}
    measurements = properties.get("measurements")
    if isinstance(measurements, dict):
        found.update(measurements)
    elif isinstance(measurements, list):  # QuPath 0.2/0.3: [{"name": ..., "value": ...}]
        found.update({m.get("name"): m.get("value") for m in measurements if isinstance(m, dict)})
    found.update({k: v for k, v in properties.items() if k in SCORE_KEYS})
    lowered = {str(k).lower(): v for k, v in found.items()}
    for key in SCORE_KEYS:
        value = lowered.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    return math.nan


def _geojson(path: Path, data: Any) -> PointSet:
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    else:
        features = data
    if not isinstance(features, list):
        raise DataError(f"{path}: a GeoJSON file needs a FeatureCollection, a Feature or a list of Features")
    rows, skipped = [], 0
    for i, feature in enumerate(features, start=1):
        where = f"{path}, feature {i}"
        if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
            raise DataError(f"{where}: not a GeoJSON Feature with a geometry")
        properties = feature.get("properties") or {}
        geometry = feature["geometry"]
        is_point = geometry.get("type") in ("Point", "MultiPoint")
        object_type = str(properties.get("objectType", "")).lower()
        if not is_point and object_type not in ("detection", "cell", "tile"):
            skipped += 1  # a region the user drew (the ROI), not a figure
            continue
        name, score = _classification(properties), _measurement(properties)
        rows += [(x, y, score, name) for x, y in _centres(geometry, where)]
    notes = [f"{skipped} region annotation(s) in {path.name} are outlines, not figures: left out"] if skipped else []
    return _point_set(path, "geojson", rows, "px", skipped=skipped, notes=notes)


# ---------------------------------------------------------------------------------------------- boxes


def _box_centre(item: dict[str, Any], where: str) -> tuple[float, float]:
    lowered = {str(k).lower(): v for k, v in item.items()}
    for keys in (("x1", "y1", "x2", "y2"), ("xmin", "ymin", "xmax", "ymax"), ("x_min", "y_min", "x_max", "y_max"),
                 ("left", "top", "right", "bottom")):
        if all(k in lowered for k in keys):
            x1, y1, x2, y2 = (_number(lowered[k], where) for k in keys)
            return (x1 + x2) / 2, (y1 + y2) / 2
    for key in ("box", "xyxy"):
        if isinstance(lowered.get(key), list) and len(lowered[key]) == 4:
            x1, y1, x2, y2 = (_number(v, where) for v in lowered[key])
            return (x1 + x2) / 2, (y1 + y2) / 2
    if isinstance(lowered.get("bbox"), list) and len(lowered["bbox"]) == 4:  # COCO: x, y, width, height
        x, y, w, h = (_number(v, where) for v in lowered["bbox"])
        return x + w / 2, y + h / 2
    raise DataError(f"{where}: no box found (expected x1/y1/x2/y2, xmin/ymin/xmax/ymax, box, xyxy or COCO bbox; "
                    f"keys {sorted(lowered)[:8]})")


def _box_name(item: dict[str, Any]) -> str:
    for key in ("label", "class", "category", "name", "category_id"):
        if item.get(key) is not None:
            return str(item[key])
    return ""


def _boxes(path: Path, data: Any) -> PointSet:
    if isinstance(data, dict) and isinstance(data.get("boxes"), list) and data["boxes"] and \
            isinstance(data["boxes"][0], list):  # torchvision: parallel lists
        scores, labels = data.get("scores") or [], data.get("labels") or []
        items = [{"box": box, **({"score": scores[i]} if i < len(scores) else {}),
                  **({"label": labels[i]} if i < len(labels) else {})} for i, box in enumerate(data["boxes"])]
    elif isinstance(data, dict):
        key = next((k for k in BOX_LISTS if isinstance(data.get(k), list)), None)
        if key is None:
            raise DataError(f"{path}: cannot tell what this JSON holds: not a Track 1 file ('points'), not GeoJSON, "
                            f"and no list of boxes under {list(BOX_LISTS)} (keys: {sorted(data)[:8]})")
        items = data[key]
    elif isinstance(data, list):
        items = data
    else:
        raise DataError(f"{path}: expected a JSON list or object of boxes")
    rows = []
    for i, item in enumerate(items, start=1):
        where = f"{path}, box {i}"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected an object with a box, found {str(item)[:40]}")
        x, y = _box_centre(item, where)
        rows.append((x, y, _score(item, where), _box_name(item)))
    return _point_set(path, "boxes", rows, "px")


# ------------------------------------------------------------------------------------------------ CSV


def csv_units(header: Iterable[str]) -> str:
    """``um`` (``mm``) when the coordinate columns say so (QuPath's ``Centroid X µm``), else ``px``."""
    text = " ".join(header).lower()
    if re.search(r"(µm|\bum\b|_um\b|micron)", text):
        return "um"
    if re.search(r"(\bmm\b|_mm\b)", text):
        return "mm"
    return "px"


def _csv(path: Path) -> list[PointSet]:
    table = read_table(path)
    x_col, y_col = find_column(table.header, *CSV_X), find_column(table.header, *CSV_Y)
    if x_col is None or y_col is None:
        raise DataError(f"{path}, row 1: no x and y columns (found {table.header}); name them x and y")
    score_col = find_column(table.header, *CSV_SCORE)
    name_col = find_column(table.header, *CSV_NAME)
    image_col = find_column(table.header, *CSV_IMAGE)
    units = csv_units([x_col, y_col])
    groups: dict[str | None, list[tuple[float, float, float, str]]] = {}
    for line, row in table.rows:
        where = f"{path}, row {line}"
        score = _number(row[score_col], where) if score_col and row[score_col] else math.nan
        slide = row[image_col] if image_col else None
        if image_col and not slide:
            raise DataError(f"{where}: empty {image_col}")
        groups.setdefault(slide, []).append((_number(row[x_col], f"{where}, {x_col}"),
                                             _number(row[y_col], f"{where}, {y_col}"), score,
                                             row[name_col] if name_col else ""))
    if not groups:
        return [_point_set(path, "csv", [], units)]
    return [_point_set(path, "csv", rows, units, slide=slide) for slide, rows in groups.items()]


# ------------------------------------------------------------------------------------------- entry


def detect_point_format(path: Path, data: Any = None) -> str:
    """The format of a points file, from its suffix and (for JSON) its content."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix == ".geojson":
        return "geojson"
    if isinstance(data, dict) and isinstance(data.get("points"), list):
        return "track1"
    if isinstance(data, dict) and data.get("type") in ("FeatureCollection", "Feature"):
        return "geojson"
    if isinstance(data, list) and data and isinstance(data[0], dict) and data[0].get("type") == "Feature":
        return "geojson"
    return "boxes"


def read_point_file(path: str | Path, fmt: str = "auto") -> list[PointSet]:
    """Every :class:`PointSet` in a file: one, or one per slide for a CSV naming the slide of each row."""
    path = Path(path)
    if fmt not in POINT_FORMATS:
        raise DataError(f"unknown points format {fmt!r}; choose from {list(POINT_FORMATS)}")
    if fmt == "csv" or (fmt == "auto" and path.suffix.lower() == ".csv"):
        return _csv(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such points file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 JSON file") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    fmt = detect_point_format(path, data) if fmt == "auto" else fmt
    if fmt == "track1":
        if not isinstance(data, dict):
            raise DataError(f"{path}: a Track 1 file is a JSON object with 'points'")
        return [_track1(path, data)]
    if fmt == "geojson":
        return [_geojson(path, data)]
    return [_boxes(path, data)]


def select_points(points: PointSet, min_probability: float | None = None, names: Sequence[str] | None = None
                  ) -> np.ndarray:
    """Which points are mitotic figures to classify. ``min_probability``: the detector's score at least this
    (a re-threshold: a Track 1 point's name no longer matters); ``names``: only points of these names or
    classes (case-insensitive). By default, a Track 1 file's ``mitotic figure`` points and every point of the
    other formats."""
    keep = np.ones(len(points), dtype=bool)
    if min_probability is not None:
        if len(points) and np.isnan(points.score).all():
            raise DataError(f"{points.source}: its points carry no score to re-threshold with --min-probability")
        keep &= np.nan_to_num(points.score, nan=-np.inf) >= min_probability
    if names:
        wanted = {n.strip().lower() for n in names}
        keep &= np.array([n.strip().lower() in wanted for n in points.names], dtype=bool)
    elif points.fmt == "track1" and min_probability is None:
        lowered = [n.strip().lower() for n in points.names]
        if lowered and not any(n in TRACK1_NAMES for n in lowered):  # not the container's words: its decision is lost
            raise DataError(f"{points.source}: none of its {len(lowered)} points is named {TRACK1_NAMES[0]!r} or "
                            f"{TRACK1_NAMES[1]!r} (names: {sorted(set(points.names))[:4]}), so which ones the "
                            "detector kept is unknown: keep points by score with --min-probability P or by name "
                            "with --points-class NAME")
        keep &= np.array([n == TRACK1_MITOSIS for n in lowered], dtype=bool)
    return keep


def resolve_units(points: PointSet, units: str, slide_states_resolution: bool) -> str:
    """The units ``points`` are read in: the user's (``units`` not ``auto``), else the file's; Track 1's
    ``auto`` is millimetres when the slide file carries a resolution, pixels when it does not."""
    if units not in UNITS:
        raise DataError(f"unknown units {units!r}; choose from {list(UNITS)}")
    if units != "auto":
        return units
    if points.units == "auto":
        return "mm" if slide_states_resolution else "px"
    return points.units


def to_level0(values: np.ndarray, units: str, mpp: float) -> np.ndarray:
    """Coordinates in ``units`` as level-0 pixels of a slide of ``mpp`` µm/px."""
    scale = {"px": 1.0, "um": 1.0 / mpp, "mm": 1000.0 / mpp}[units]
    return np.asarray(values, dtype=np.float64) * scale
