"""Checkpoints: a model artifact for inference and a resume state for interrupted runs.

The model artifact is one ``model.safetensors`` holding only the trained tensors (adapters, heads,
and the backbone only under full fine-tuning) with the configuration, threshold and preprocessing
in its metadata, so that a single atomic rename publishes a consistent model. ``model.json``
beside it repeats the metadata for people. The base backbone weights are referenced, not copied.
Nothing here unpickles: safetensors, JSON, and ``torch.load(weights_only=True)`` for resume state.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from mitotype import __version__
from mitotype.errors import MitotypeError
from mitotype.ioutils import atomic_save_safetensors, atomic_write, write_json_atomic

ARTIFACT_FORMAT = 1
MODEL_FILE = "model.safetensors"
META_FILE = "model.json"


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
) -> Path:
    """Write ``model.safetensors`` (+ ``model.json``) for a trained :class:`MitoClassifier`."""
    from mitotype.training.config import to_dict

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
    }
    path = Path(out_dir) / MODEL_FILE
    state = tensors if tensors is not None else model.trainable_state_dict()
    atomic_save_safetensors(state, path, {"mitotype": json.dumps(meta)})
    write_json_atomic(Path(out_dir) / META_FILE, meta)
    return path


@dataclass
class LoadedModel:
    """A trained model ready for inference."""

    model: Any
    threshold: float
    meta: dict[str, Any]
    path: Path


def read_artifact_meta(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise MitotypeError(f"{model_dir}: no {MODEL_FILE} (not a trained mitotype model folder)")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("mitotype")
    except (SafetensorError, OSError) as exc:
        raise MitotypeError(f"{path}: unreadable model file ({exc})") from None
    if not raw:
        raise MitotypeError(f"{path}: carries no mitotype metadata (not written by mitotype)")
    meta = json.loads(raw)
    if meta.get("format") != ARTIFACT_FORMAT:
        raise MitotypeError(f"{path}: model format {meta.get('format')} is not supported")
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
    from mitotype.models.classifier import build_classifier, build_device
    from mitotype.training.config import load_config

    model_dir = Path(model_dir)
    meta = read_artifact_meta(model_dir)
    config = load_config(meta["config"])
    packed = meta.get("base_weights")
    if base_weights is not None:
        config.model.weights = str(base_weights)
    elif packed:
        config.model.weights = str(model_dir / packed)
    if meta.get("merged"):
        config.model.adaptation = "full"
    # Training seeded the build with config.seed: a backbone without pretrained weights (the test
    # stand-ins, weights: random) is then re-created identically here (built on the CPU, as in
    # training; a pretrained one is built on the target device, see build_device).
    device = torch.device(device)
    torch.manual_seed(config.seed)
    with build_device(config.model, device):
        model = build_classifier(config.model, num_domains=int(meta.get("num_domains", 0)))
    state = load_file(str(model_dir / MODEL_FILE))
    model.load_trainable_state_dict(state)
    model.to(device).eval()
    return LoadedModel(model=model, threshold=float(meta["threshold"]), meta=meta, path=model_dir)


# --------------------------------------------------------------------------- resume state


def save_resume_state(
    path: Path,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    focal: Any,
    miner: Any,
    *,
    epoch: int,
    best: dict[str, Any] | None,
    history: list[dict[str, Any]],
    bad_epochs: int,
    difficulty: np.ndarray | None,
    stopped: bool = False,
    fingerprint: str = "",
) -> None:
    """Everything needed to continue after ``epoch`` exactly as an uninterrupted run would."""
    state = {
        "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in model.trainable_state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "focal": focal.state_dict(),
        "miner": miner.state_dict(),
        "best": _plain(best),
        "history": _plain(history),
        "bad_epochs": bad_epochs,
        "stopped": stopped,
        "fingerprint": fingerprint,
        "difficulty": None if difficulty is None else torch.from_numpy(np.asarray(difficulty, dtype=np.float64)),
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_resume_state(
    path: Path, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any, focal: Any, miner: Any,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """Restore a run's state; refuse a state written by another configuration or other data."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MitotypeError(f"{path}: cannot resume from this file ({type(exc).__name__})") from None
    if fingerprint is not None and state.get("fingerprint") != fingerprint:
        raise MitotypeError(f"{path}: written by a run with another configuration or other figures; "
                            "resume with the same settings and data, or train into a new folder")
    try:
        model.load_trainable_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        focal.load_state_dict(state["focal"])
        miner.load_state_dict(state["miner"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise MitotypeError(f"{path}: does not fit this run ({type(exc).__name__}: {exc})") from None
    diff = state.get("difficulty")
    state["difficulty"] = None if diff is None else diff.numpy()
    return state
