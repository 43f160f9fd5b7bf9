"""How many micrometres a slide's pixel spans: read from the file, never guessed.

Sources, first found wins: OpenSlide's ``openslide.mpp-x``/``-y`` (every vendor format it reads, and generic
TIFFs with resolution tags), then for TIFF files the OME-XML ``PhysicalSizeX``/``Y`` (with its unit), ImageJ's
``unit`` (its resolution tags then count pixels per micrometre), and the TIFF ``XResolution``/``YResolution`` tags
in pixels per inch or centimetre. A TIFF whose resolution unit is ``none`` carries no resolution.

A value outside :data:`PLAUSIBLE_MPP` is not a scan's: 72 or 96 dpi (352.8 or 264.6 µm/px) is what image
writers put in by default. Such a slide is treated as carrying no resolution, with the reason said, so that
the user gives one (``--mpp``) instead of every figure being cropped from a field the size of a lymph node.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PLAUSIBLE_MPP = (0.02, 20.0)
"""µm per pixel a microscope scan can have (from 500x down to below 1x); anything else is a writer's default."""
MICROMETRES_PER_UNIT = {"inch": 25_400.0, "centimeter": 10_000.0, "cm": 10_000.0, "mm": 1_000.0, "millimeter": 1_000.0,
                        "µm": 1.0, "um": 1.0, "micron": 1.0, "micrometer": 1.0, "nm": 1e-3,
                        "m": 1e6}


@dataclass(frozen=True)
class Resolution:
    """µm per pixel along x and y at level 0, and where the value came from."""

    mpp_x: float
    mpp_y: float
    source: str
    """``openslide``, ``ome``, ``imagej``, ``tiff-tags`` or ``--mpp``."""

    @property
    def mpp(self) -> float:
        """One value for both axes (their mean; scanners' pixels are square)."""
        return (self.mpp_x + self.mpp_y) / 2


def implausible(resolution: Resolution) -> str | None:
    """Why ``resolution`` cannot be a scan's, or ``None`` when it can."""
    lo, hi = PLAUSIBLE_MPP
    for value in (resolution.mpp_x, resolution.mpp_y):
        if not math.isfinite(value) or not lo <= value <= hi:
            writer = math.isfinite(value) and value > hi
            dpi = f" ({25_400 / value:.0f} dpi, an image writer's default)" if writer else ""
            return (f"its {resolution.source} resolution, {value:g} µm/px{dpi}, is not a microscope scan's "
                    f"({lo:g}-{hi:g} µm/px)")
    return None


def from_openslide(properties: Mapping[str, str]) -> Resolution | None:
    """``openslide.mpp-x``/``-y`` when OpenSlide knows them."""
    try:
        x, y = float(properties["openslide.mpp-x"]), float(properties["openslide.mpp-y"])
    except (KeyError, ValueError):
        return None
    return Resolution(x, y, "openslide") if x > 0 and y > 0 else None


def _ome(xml: str) -> Resolution | None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] != "Pixels":
            continue
        try:
            x, y = float(element.attrib["PhysicalSizeX"]), float(element.attrib["PhysicalSizeY"])
        except (KeyError, ValueError):
            return None
        scale_x = MICROMETRES_PER_UNIT.get(element.attrib.get("PhysicalSizeXUnit", "µm").lower())
        scale_y = MICROMETRES_PER_UNIT.get(element.attrib.get("PhysicalSizeYUnit", "µm").lower())
        if scale_x is None or scale_y is None or x <= 0 or y <= 0:
            return None
        return Resolution(x * scale_x, y * scale_y, "ome")
    return None


def _rational(value: object) -> float | None:
    if isinstance(value, tuple) and len(value) == 2:
        num, den = value
        return float(num) / float(den) if den else None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def from_tiff(tif) -> Resolution | None:  # tif: tifffile.TiffFile
    """The resolution an open TIFF states: OME-XML, ImageJ metadata, or the resolution tags with their unit."""
    if tif.is_ome and tif.ome_metadata:
        found = _ome(tif.ome_metadata)
        if found is not None:
            return found
    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
    tags = page.tags
    x_tag, y_tag, unit_tag = tags.get("XResolution"), tags.get("YResolution"), tags.get("ResolutionUnit")
    if x_tag is None or y_tag is None:
        return None
    x_per_unit, y_per_unit = _rational(x_tag.value), _rational(y_tag.value)
    if not x_per_unit or not y_per_unit:
        return None
    unit = int(unit_tag.value) if unit_tag is not None else 2  # the TIFF default unit is the inch
    if tif.is_imagej and unit == 1:
        imagej_unit = str((tif.imagej_metadata or {}).get("unit", "")).lower()
        scale = MICROMETRES_PER_UNIT.get(re.sub(r"s$", "", imagej_unit))
        if scale is not None:
            return Resolution(scale / x_per_unit, scale / y_per_unit, "imagej")
    scale = {2: MICROMETRES_PER_UNIT["inch"], 3: MICROMETRES_PER_UNIT["centimeter"]}.get(unit)
    if scale is None:  # unit "none": the numbers are an aspect ratio, not a resolution
        return None
    return Resolution(scale / x_per_unit, scale / y_per_unit, "tiff-tags")


def tiff_resolution(path: Path) -> Resolution | None:
    """:func:`from_tiff` on a file; ``None`` when it is not a TIFF tifffile can open."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return from_tiff(tif)
    except Exception:  # not a TIFF, or a broken one: the slide reader says which
        return None
