"""What a trained model folder says about itself, read without PyTorch: its metadata and its thresholds.

A model folder's ``model.safetensors`` carries the configuration, thresholds and preprocessing in its header
(see :mod:`mitotype.models.artifact`). Everything that only needs those (which thresholds an ensemble
applies, whether the folders agree on the input size, which folders a path names) lives here, so that the
ONNX Runtime path classifies without importing torch: the header is read with safetensors' numpy API, which
never touches a tensor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitotype.errors import MitotypeError
from mitotype.runs import require_finished

ARTIFACT_FORMAT = 1
MODEL_FILE = "model.safetensors"
META_FILE = "model.json"
META_KEY = "mitotype"
"""The safetensors metadata key that holds the artifact's metadata."""

__all__ = [
    "ARTIFACT_FORMAT",
    "META_FILE",
    "META_KEY",
    "MODEL_FILE",
    "check_meta_fields",
    "ensemble_threshold",
    "find_model_dirs",
    "read_members",
    "read_meta_fields",
    "threshold_of",
]


def read_raw_meta(model_dir: Path) -> tuple[str, Path]:
    """The metadata JSON text stored in a model folder's ``model.safetensors`` and the file's path."""
    from safetensors import SafetensorError, safe_open

    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise MitotypeError(f"{model_dir}: no {MODEL_FILE} (not a trained mitotype model folder)")
    try:
        with safe_open(str(path), framework="numpy") as fh:  # "pt" would import torch for nothing
            raw = (fh.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError) as exc:
        raise MitotypeError(f"{path}: unreadable model file ({exc})") from None
    if not raw:
        raise MitotypeError(f"{path}: carries no mitotype metadata (not written by mitotype)")
    return raw, path


def check_meta_fields(raw: str, path: Path) -> dict[str, Any]:
    """The parsed metadata with every field inference indexes into checked (not the model configuration,
    which only a PyTorch build needs: :func:`mitotype.models.artifact.read_artifact_meta` checks it too).
    A damaged or hand-edited header must be one line naming the file, not a traceback or a NaN threshold."""
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise MitotypeError(f"{path}: its mitotype metadata is not valid JSON (a damaged model file)") from None
    if not isinstance(meta, dict):
        raise MitotypeError(f"{path}: its mitotype metadata is a {type(meta).__name__}, not an object")
    if meta.get("format") != ARTIFACT_FORMAT:
        raise MitotypeError(f"{path}: model format {meta.get('format')} is not supported")
    for key in ("config", "preprocessing"):
        if not isinstance(meta.get(key), dict):
            raise MitotypeError(f"{path}: metadata '{key}' is missing or not an object (a damaged model file)")
    for key in ("threshold", "threshold_tta"):
        value = meta.get(key)
        if value is None and key == "threshold_tta":
            continue  # written by versions before TTA thresholds
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise MitotypeError(f"{path}: metadata '{key}' must be a number in [0, 1], got {value!r}")
    for key, value in (("num_domains", meta.get("num_domains", 0)), ("config.seed", meta["config"].get("seed", 0))):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise MitotypeError(f"{path}: metadata '{key}' must be a whole number >= 0, got {value!r}")
    return meta


def read_meta_fields(model_dir: Path) -> dict[str, Any]:
    """A model folder's metadata, its inference fields checked (:func:`check_meta_fields`), without torch."""
    raw, path = read_raw_meta(model_dir)
    return check_meta_fields(raw, path)


def threshold_of(meta: dict, tta: bool) -> float:
    """The member's threshold for the way it is applied: TTA shifts probabilities, so a model stores
    one threshold chosen on single-view validation scores and one on 8-view TTA scores."""
    if tta and meta.get("threshold_tta") is not None:
        return float(meta["threshold_tta"])
    return float(meta["threshold"])


def ensemble_threshold(metas: Sequence[dict], tta: bool = False) -> float:
    """An ensemble's threshold: the mean of its members' validation thresholds for the way it is applied."""
    return float(np.mean([threshold_of(m, tta) for m in metas]))


def find_model_dirs(path: str | Path) -> list[Path]:
    """A model folder, or a folder of them (e.g. a cross-validation run's ``folds/*/model``)."""
    path = Path(path)
    if (path / MODEL_FILE).is_file():
        return [path]
    found = sorted(p.parent for p in path.glob(f"**/{MODEL_FILE}"))
    if not found:
        raise MitotypeError(f"{path}: no trained model found (expected {MODEL_FILE} here or below)")
    return found


def read_members(paths: Sequence[str | Path], allow_unfinished: bool = False,
                 read_meta: Any = read_meta_fields) -> tuple[list[Path], list[dict[str, Any]]]:
    """The model folders under ``paths`` and their metadata, as an ensemble takes them: a run whose training
    did not finish is refused unless ``allow_unfinished``, and the members must agree on the input size.
    ``read_meta`` reads one folder's metadata (the PyTorch path also checks the model configuration)."""
    dirs = [d for p in paths for d in find_model_dirs(p)]
    require_finished(dirs, allow_unfinished)  # a run stopped half-way is not a model
    metas = [read_meta(d) for d in dirs]
    sizes = {tuple(m["preprocessing"].get("input_size", ())) for m in metas}
    if len(sizes) > 1:
        raise MitotypeError(f"ensemble members disagree on input size: {sorted(sizes)}")
    return dirs, metas
