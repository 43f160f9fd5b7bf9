"""The one place the slides part calls the models layer: p(atypical) and the threshold for patches.

:func:`load_classifier` is the one entry to the models layer (``load_predictor``: ONNX Runtime without torch
where every model has a current graph, PyTorch otherwise, as ``mitotype predict`` runs them); nothing else in
:mod:`mitotype.slides` imports it. p(atypical) and the threshold are calibrated where the models store a
calibration, as everywhere. It is called only when a slide has figures to classify.
:func:`model_identity` says which weights a result came from without loading them (a hash of each member's
``model.safetensors``, whose metadata holds its thresholds and configuration).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mitotype.data.patches import file_digest
from mitotype.errors import MitotypeError

MODEL_FILE = "model.safetensors"


@dataclass
class Classifier:
    """Models ready to score patches: ``predict(N x 128 x 128 x 3 uint8) -> p(atypical)``."""

    predict: Callable[[np.ndarray], np.ndarray]
    threshold: float
    """p(atypical) at or above it is called atypical."""
    models: list[str]
    """The model folders, for the record."""
    name: str
    """Short, for tables: the shipped model's name or the first folder's."""
    notes: list[str] = field(default_factory=list)


def _shipped_root() -> Path:
    """The folder of the models that ship with mitotype, found without importing ``mitotype.models.shipped``
    (which loads torch through safetensors)."""
    spec = importlib.util.find_spec("mitotype.models.shipped")
    if spec is None or spec.origin is None:
        raise MitotypeError("this installation of mitotype has no shipped models; pass --model")
    return Path(spec.origin).parent / "shipped"


def model_files(models: Sequence[str | Path] | None) -> list[Path]:
    """The weights a run would use: those of every member under ``models`` (a model folder or a folder of
    them, as ``find_model_dirs`` looks), or, without ``models``, every shipped model (one of them the default)."""
    if not models:
        return sorted(_shipped_root().glob(f"*/{MODEL_FILE}"))
    found = []
    for entry in models:
        path = Path(entry)
        files = [path / MODEL_FILE] if (path / MODEL_FILE).is_file() else sorted(path.glob(f"**/{MODEL_FILE}"))
        if not files:
            raise MitotypeError(f"{path}: no trained model found (expected {MODEL_FILE} here or below)")
        found += files
    return found


def model_identity(models: Sequence[str | Path] | None) -> dict[str, object]:
    """What results computed with ``models`` depend on, cheaply: the members' weight files by content."""
    return {"models": "shipped" if not models else [str(Path(m)) for m in models],
            "weights": [file_digest(path) for path in model_files(models)]}


def load_classifier(models: Sequence[str | Path] | None = None, *, tta: bool = False, threshold: float | None = None,
                    device: str = "auto", runtime: str = "auto", batch_size: int = 64,
                    allow_unfinished: bool = False) -> Classifier:
    """The shipped model (``models`` None) or the model folders / fold ensembles under ``models``, with their
    own threshold for the way they are applied (``tta``: 8 dihedral views) unless ``threshold`` is given."""
    from mitotype.models.inference import load_predictor
    from mitotype.runs import require_finished

    if models:
        dirs = list(models)
        name = Path(models[0]).name
    else:
        from mitotype.models.shipped import get_shipped_model

        shipped = get_shipped_model()
        dirs, name = [shipped.folder], shipped.name
    ensemble = load_predictor(dirs, device=device, allow_unfinished=allow_unfinished, runtime=runtime)
    notes = require_finished(ensemble.dirs, allow_unfinished=True) if allow_unfinished else []
    chosen = ensemble.threshold(tta) if threshold is None else float(threshold)

    def predict(images: np.ndarray) -> np.ndarray:
        if len(images) == 0:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(ensemble.predict(images, batch_size=batch_size, tta=tta), dtype=np.float64)

    return Classifier(predict, chosen, [str(d) for d in ensemble.dirs], name, notes)
