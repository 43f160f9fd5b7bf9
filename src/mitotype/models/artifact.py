"""The trained-model artifact: what training publishes and what every prediction path loads.

The model artifact is one ``model.safetensors`` holding only the trained tensors (adapters, heads,
and the backbone only under full fine-tuning) with the configuration, threshold and preprocessing
in its metadata, so that a single atomic rename publishes a consistent model. ``model.json``
beside it repeats the metadata for people. The base backbone weights are referenced, not copied.
Nothing here unpickles: safetensors and JSON. The model is rebuilt from the ``model`` section of the
stored configuration alone, so loading a model needs nothing from the training code.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mitotype import __version__
from mitotype.errors import MitotypeError, WeightsError
from mitotype.ioutils import atomic_save_safetensors, write_json_atomic
from mitotype.models.calibration import Calibration
from mitotype.models.classifier import ModelConfig, build_classifier, build_device
from mitotype.models.metadata import ARTIFACT_FORMAT, META_FILE, META_KEY, MODEL_FILE, check_meta_fields, read_raw_meta
from mitotype.settings import to_dict


def _plain(value: Any) -> Any:
    """JSON-safe, weights_only-safe copy (numpy scalars to Python, arrays to lists)."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def save_model_artifact(
    out_dir: Path,
    model: Any,
    config: Any,
    threshold: float,
    metrics: dict[str, Any] | None = None,
    domains: list[str] | None = None,
    threshold_tta: float | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
    calibration: dict[str, Calibration] | None = None,
) -> Path:
    """Write ``model.safetensors`` (+ ``model.json``) for a trained :class:`MitoClassifier`.

    ``config`` is the whole run configuration (a dataclass, stored for tracing); loading needs only its
    ``model`` section and ``seed``. ``calibration``: the Platt map of each way of scoring (``single``, ``tta``)
    fitted on the validation slides; thresholds stay on the raw scale and are mapped where p is reported.
    """
    meta = {
        "format": ARTIFACT_FORMAT,
        "mitotype_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": to_dict(config),
        "threshold": float(threshold),
        "threshold_tta": None if threshold_tta is None else float(threshold_tta),
        "preprocessing": _plain(model.preprocessing),
        "metrics": _plain(metrics or {}),
        "domains": list(domains or []),
        "num_domains": int(getattr(model, "num_domains", 0)),
        "merged": bool(getattr(model, "merged", False)),
        "calibration": {view: cal.to_dict() for view, cal in (calibration or {}).items()},
    }
    path = Path(out_dir) / MODEL_FILE
    state = tensors if tensors is not None else model.trainable_state_dict()
    atomic_save_safetensors(state, path, {META_KEY: json.dumps(meta)})
    write_json_atomic(Path(out_dir) / META_FILE, meta)
    return path


CALIBRATED_VIEWS = ("single", "tta")
"""The ways of scoring a calibration map is fitted for: one view, 8-view TTA (its scores are pulled inward)."""


def stored_calibration(meta: dict[str, Any], tta: bool) -> Calibration | None:
    """The calibration map a model stores for one way of scoring (``None``: written before calibration)."""
    entry = meta.get("calibration", {}).get("tta" if tta else "single")
    return None if entry is None else Calibration.from_dict(entry)


def model_config_of(meta: dict[str, Any]) -> ModelConfig:
    """The validated model section of an artifact's stored run configuration."""
    section = meta.get("config", {}).get("model")
    if not isinstance(section, dict):
        raise MitotypeError("model metadata holds no model configuration (not written by mitotype)")
    return ModelConfig.from_dict(section)


def check_artifact_fits(model_dir: Path, meta: dict[str, Any]) -> None:
    """Check, on the meta device (nothing allocated, no base weights read), that the stored configuration
    builds a model whose trainable tensors are those in the file: export must not pack a model the
    container can only refuse."""
    path = Path(model_dir) / MODEL_FILE
    model_config = model_config_of(meta)
    model_config.weights = None  # shapes only
    if meta.get("merged"):
        model_config.adaptation = "full"
    with torch.device("meta"):
        model = build_classifier(model_config, num_domains=int(meta.get("num_domains", 0)))
        with safe_open(str(path), framework="pt") as fh:
            state = {k: torch.empty(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    try:
        model.load_trainable_state_dict(state)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None


@dataclass
class LoadedModel:
    """A trained model ready for inference."""

    model: Any
    threshold: float
    meta: dict[str, Any]
    path: Path


def read_artifact_meta(model_dir: Path) -> dict[str, Any]:
    """The metadata stored in a model folder's ``model.safetensors`` (checked to be ours and readable, its
    model configuration included: what a PyTorch build needs; ONNX Runtime needs only
    :func:`mitotype.models.metadata.read_meta_fields`)."""
    raw, path = read_raw_meta(model_dir)
    return _checked_meta(raw, path)


def _checked_meta(raw: str, path: Path) -> dict[str, Any]:
    """The parsed metadata, checked once here because every prediction path indexes into it: a damaged or
    hand-edited header must be one line naming the file, not a traceback (or a NaN threshold) later on."""
    meta = check_meta_fields(raw, path)
    calibration = meta.get("calibration", {})  # absent in models written before calibration
    if not isinstance(calibration, dict) or not set(calibration) <= set(CALIBRATED_VIEWS):
        raise MitotypeError(f"{path}: metadata 'calibration' must map {list(CALIBRATED_VIEWS)} to fitted maps, "
                            f"got {calibration!r}")
    for view, entry in calibration.items():
        Calibration.from_dict(entry, where=f"{path}: metadata 'calibration.{view}'")
    try:
        model_config_of(meta)  # the stored model section: known backbone, values in range
    except MitotypeError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    return meta


def load_model_artifact(
    model_dir: str | Path,
    base_weights: str | None = None,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Rebuild a trained classifier from its folder.

    ``base_weights`` overrides where the backbone's pretrained weights come from (a container ships
    them beside the model; ``base_weights`` in the metadata names a file relative to the folder).
    """
    model_dir = Path(model_dir)
    meta = read_artifact_meta(model_dir)
    model_config = model_config_of(meta)
    packed = meta.get("base_weights")
    if base_weights is not None:
        model_config.weights = str(base_weights)
    elif packed:
        model_config.weights = str(model_dir / packed)
    if meta.get("merged"):
        model_config.adaptation = "full"
    # Training seeded the build with config.seed: a backbone without pretrained weights (the test
    # stand-ins, weights: random) is then re-created identically here (built on the CPU, as in
    # training; a pretrained one is built on the target device, see build_device).
    device = torch.device(device)
    torch.manual_seed(int(meta["config"].get("seed", 0)))
    with build_device(model_config, device):
        model = build_classifier(model_config, num_domains=int(meta.get("num_domains", 0)))
    state = load_file(str(model_dir / MODEL_FILE))
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:  # a diverged run's weights: every score would be NaN
        raise MitotypeError(f"{model_dir / MODEL_FILE}: {len(broken)} tensor(s) hold NaN or infinite values "
                            f"({', '.join(broken[:3])}); retrain or use another model")
    try:
        model.load_trainable_state_dict(state)
    except WeightsError as exc:  # the stored configuration builds a model these tensors do not fit
        raise WeightsError(f"{model_dir / MODEL_FILE}: {exc}") from None
    model.to(device).eval()
    return LoadedModel(model=model, threshold=float(meta["threshold"]), meta=meta, path=model_dir)


__all__ = [
    "ARTIFACT_FORMAT",
    "CALIBRATED_VIEWS",
    "META_FILE",
    "MODEL_FILE",
    "LoadedModel",
    "check_artifact_fits",
    "load_model_artifact",
    "model_config_of",
    "read_artifact_meta",
    "save_model_artifact",
    "stored_calibration",
]
