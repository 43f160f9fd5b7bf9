"""mitotype: normal vs atypical mitotic figure classification (MIDOG 2025 Track 2).

Atypical is the positive class everywhere: label 1, and every probability is p(atypical).

The public Python API (:mod:`mitotype.api`), importable from here without loading torch or the training code::

    classifier = mitotype.load()                 # the shipped model, a model folder, a cv run or a tarball
    result = classifier.predict(figures)         # uint8 arrays, PIL images, paths, a folder, lists of these
    result.p_atypical, result.atypical, result.threshold
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # the names below are loaded on first use (``mitotype.load``), so ``import mitotype`` stays light
    from mitotype.api import Classifier, FigureBatch, Predictions, load, read_figures
    from mitotype.errors import DataError, MissingExtraError, MitotypeError

_PUBLIC = {
    "load": "mitotype.api",
    "Classifier": "mitotype.api",
    "Predictions": "mitotype.api",
    "FigureBatch": "mitotype.api",
    "read_figures": "mitotype.api",
    "MitotypeError": "mitotype.errors",
    "DataError": "mitotype.errors",
    "MissingExtraError": "mitotype.errors",
    # slides: the whole-slide call of `mitotype slides` (mitotype.slides) joins here when it is merged
}

__all__ = [
    "Classifier",
    "DataError",
    "FigureBatch",
    "MissingExtraError",
    "MitotypeError",
    "Predictions",
    "__version__",
    "load",
    "read_figures",
]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
