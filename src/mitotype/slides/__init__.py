"""From whole-slide images and a mitosis detector's points to each slide's atypical count and fraction, its
hotspot, and files a pathologist opens (QuPath GeoJSON, an HTML page): ``mitotype slides``.

A part of its own beside ``serving`` in the layer contract, using ``models`` (through :mod:`.classify` only),
``evaluation`` (the gallery) and ``data`` below it. The library entry is :func:`analyse_slides`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "COHORT_COLUMNS": "analyse", "FIGURE_COLUMNS": "analyse", "SlideOptions": "analyse",
    "CohortResult": "cohort", "SlideResult": "cohort", "analyse_slides": "cohort", "open_slide": "wsi",
}
"""Imported on first use, so that the command line's parser (which reads :mod:`.choices`) stays light."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mitotype.slides' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mitotype.slides.{_EXPORTS[name]}"), name)
