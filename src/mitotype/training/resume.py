"""The resume state of an interrupted run: ``last_state.pt`` beside the model artifact.

Written after every epoch; holds the trainable tensors, optimiser, schedule, the strategies' own state and
the run's history, so that ``--resume`` ends exactly where an uninterrupted run would. Read with
``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mitotype.errors import MitotypeError
from mitotype.ioutils import atomic_torch_save

RUN_KEYS = ("best", "history", "bad_epochs")
"""The selection record's part of the state (:class:`mitotype.training.selection.Selection`)."""
RESERVED_STATE_KEYS = frozenset({"epoch", "model", "optimizer", "scheduler", *RUN_KEYS, "stopped", "fingerprint",
                                 "difficulty", "weight_averaging"})
"""Keys the state keeps for itself: no strategy may store its own state under one of them. ``difficulty`` is where
earlier versions kept a second copy of hard mining's difficulty (no longer written or read: ``miner`` holds it)."""


def _plain(value: Any) -> Any:
    """JSON-safe, weights_only-safe copy (numpy scalars to Python, arrays to lists)."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def save_resume_state(
    path: Path,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    strategies: Mapping[str, Any],
    *,
    epoch: int,
    selection: Mapping[str, Any],
    stopped: bool = False,
    fingerprint: str = "",
) -> None:
    """Everything needed to continue after ``epoch`` exactly as an uninterrupted run would.

    ``strategies`` maps each stateful strategy's key (``focal``, ``miner``, ...) to the object whose
    ``state_dict()`` is stored under that key; ``selection`` is the selection record's state (:data:`RUN_KEYS`).
    """
    state = {
        "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in model.trainable_state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        **{key: strategy.state_dict() for key, strategy in strategies.items()},
        **{key: _plain(selection[key]) for key in RUN_KEYS},
        "stopped": stopped,
        "fingerprint": fingerprint,
    }
    atomic_torch_save(state, path)


def read_resume_state(path: Path, fingerprint: str | None = None) -> dict[str, Any]:
    """A run's resume state, refused when another configuration or other data wrote it; reading changes
    nothing, so a refused ``--resume`` leaves the run as it was."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MitotypeError(f"{path}: cannot resume from this file ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise MitotypeError(f"{path}: cannot resume from this file (not a resume state)")
    if fingerprint is not None and state.get("fingerprint") != fingerprint:
        raise MitotypeError(f"{path}: written by a run with another configuration or other figures; "
                            "resume with the same settings and data, or train into a new folder")
    return state


def restore_resume_state(
    path: Path, state: dict[str, Any], model: Any, optimizer: torch.optim.Optimizer, scheduler: Any,
    strategies: Mapping[str, Any],
) -> dict[str, Any]:
    """Put a state :func:`read_resume_state` returned back into the model, optimiser, schedule and strategies."""
    try:
        model.load_trainable_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        for key, strategy in strategies.items():
            strategy.load_state_dict(state[key])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise MitotypeError(f"{path}: does not fit this run ({type(exc).__name__}: {exc})") from None
    return state


__all__ = ["RESERVED_STATE_KEYS", "RUN_KEYS", "read_resume_state", "restore_resume_state", "save_resume_state"]
