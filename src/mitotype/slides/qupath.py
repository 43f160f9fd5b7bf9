"""A slide's figures and hotspot as GeoJSON that QuPath imports (File > Import objects, or drag and drop).

A FeatureCollection in level-0 pixel coordinates, as QuPath writes and reads them. Each figure is a Point
feature with ``objectType: "detection"``, a ``classification`` (``Atypical`` or ``Normal`` and a colour, so
QuPath shows and counts the classes) and ``measurements`` (``p_atypical``, the threshold, the detector's score),
which QuPath lists in its measurement tables. The hotspot is a rectangle annotation (classification ``Hotspot``)
whose measurements hold its counts. The structure is RFC 7946's; the coordinates are pixels, not longitude and
latitude, as in every QuPath export.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mitotype.ioutils import write_json_atomic

COLOURS: dict[str, tuple[int, int, int]] = {"Atypical": (192, 57, 43), "Normal": (44, 127, 184),
                                            "Hotspot": (241, 196, 15)}
"""Red for atypical, blue for normal (the gallery's colours), yellow for the hotspot."""


def _classification(name: str) -> dict[str, Any]:
    return {"name": name, "color": list(COLOURS[name])}


def figure_feature(figure: dict[str, Any]) -> dict[str, Any]:
    """A figure row (``x_px``, ``y_px``, ``p_atypical``, ``class``, ``threshold``, ``detector_score``) as a
    QuPath point detection."""
    name = "Atypical" if figure["class"] == "atypical" else "Normal"
    measurements = {"p_atypical": float(figure["p_atypical"]), "threshold": float(figure["threshold"])}
    score = figure.get("detector_score")
    if score is not None and score != "" and math.isfinite(float(score)):
        measurements["detector score"] = float(score)
    return {"type": "Feature",
            "geometry": {"type": "Point", "coordinates": [float(figure["x_px"]), float(figure["y_px"])]},
            "properties": {"objectType": "detection", "name": f"figure {figure['figure']}",
                           "classification": _classification(name), "measurements": measurements}}


def hotspot_feature(box_px: tuple[float, float, float, float], figures: int, atypical: int, area_mm2: float
                    ) -> dict[str, Any]:
    """The hotspot ``(left, top, right, bottom)`` in level-0 pixels as a rectangle annotation."""
    x0, y0, x1, y1 = (float(v) for v in box_px)
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]  # counter-clockwise in x, y (RFC 7946)
    fraction = atypical / figures if figures else None
    measurements: dict[str, float] = {"mitotic figures": figures, "atypical": atypical,
                                      "area mm2": round(area_mm2, 4)}
    if fraction is not None:
        measurements["atypical fraction"] = round(fraction, 4)
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"objectType": "annotation",
                           "name": f"Hotspot {area_mm2:.2f} mm2: {figures} mitotic figures, {atypical} atypical",
                           "classification": _classification("Hotspot"), "isLocked": True,
                           "measurements": measurements}}


def slide_geojson(figures: Sequence[dict[str, Any]], hotspot: dict[str, Any] | None = None) -> dict[str, Any]:
    """The FeatureCollection of a slide: its figures, then its hotspot (a :func:`hotspot_feature`) if any."""
    features = [figure_feature(f) for f in figures]
    if hotspot is not None:
        features.append(hotspot)
    return {"type": "FeatureCollection", "features": features}


def write_slide_geojson(path: str | Path, figures: Sequence[dict[str, Any]], hotspot: dict[str, Any] | None = None
                        ) -> Path:
    return write_json_atomic(path, slide_geojson(figures, hotspot), indent=None)
