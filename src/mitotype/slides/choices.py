"""The option values of ``mitotype slides`` (no heavy imports: the command line builds its parser from them)."""

from __future__ import annotations

POINT_FORMATS = ("auto", "track1", "geojson", "csv", "boxes")
"""Points files: see :mod:`mitotype.slides.points`."""
UNITS = ("auto", "px", "um", "mm")
"""Units of point coordinates (``px``: level-0 pixels)."""
DEFAULT_HOTSPOT_MM2 = 2.37
"""10 high-power fields of field number 22 (veterinary standard); 2 mm² is the MIDOG regions' and the usual
breast-grading figure for 10 HPF."""
