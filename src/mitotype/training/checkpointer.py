"""A training run's folder on disk: its lock and ``run.json``, ``config.yaml``, the kept model, and the
``last_state.pt`` a run resumes from.

One job: everything the trainer writes to or reads back from the run folder besides the per-epoch rows
(:mod:`mitotype.training.recorder`). Only the main process writes (``enabled``); every process reads the
resume state, which is refused before the folder is touched when another configuration or other figures
wrote it (its fingerprint differs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from mitotype.models.artifact import MODEL_FILE, save_model_artifact
from mitotype.models.calibration import Calibration
from mitotype.runs import RunStatus, training_run
from mitotype.training.config import TrainConfig, save_config
from mitotype.training.resume import read_resume_state, restore_resume_state, save_resume_state

STATE_FILE = "last_state.pt"
CONFIG_FILE = "config.yaml"


class Checkpointer:
    """Reads and writes one run folder for the trainer."""

    def __init__(self, out_dir: str | Path, fingerprint: str, enabled: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.fingerprint = fingerprint
        """What a resume state must have been written under (:func:`mitotype.training.trainer.run_fingerprint`)."""
        self.enabled = enabled
        self._status: RunStatus | None = None
        """The folder's ``run.json`` while :meth:`locked` holds it."""

    @property
    def state_path(self) -> Path:
        return self.out_dir / STATE_FILE

    # -- resume ---------------------------------------------------------------------------------------

    def read(self) -> dict[str, Any] | None:
        """The folder's resume state, checked against this run's fingerprint; ``None`` when it has none.
        Reading changes nothing, so a refused resume leaves the run as it was."""
        if not self.state_path.is_file():
            return None
        return read_resume_state(self.state_path, fingerprint=self.fingerprint)

    def restore(self, state: dict[str, Any], model: Any, optimizer: torch.optim.Optimizer, scheduler: Any,
                stateful: Mapping[str, Any]) -> dict[str, Any]:
        """Put ``state`` back into the model, optimiser, schedule and everything ``stateful`` (by resume key), and
        record the epochs it had done in ``run.json``; the state."""
        state = restore_resume_state(self.state_path, state, model, optimizer, scheduler, stateful)
        if self._status is not None:
            self._status.epoch_done(state["epoch"] + 1, stopped_early=bool(state.get("stopped")))
        return state

    def end_epoch(self, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any, stateful: Mapping[str, Any],
                  *, epoch: int, selection: Mapping[str, Any], stopped: bool) -> None:
        """After 0-based ``epoch``: ``last_state.pt`` to continue from, then the epoch counted in ``run.json``."""
        if not self.enabled:
            return
        save_resume_state(self.state_path, model, optimizer, scheduler, stateful, epoch=epoch, selection=selection,
                          stopped=stopped, fingerprint=self.fingerprint)
        if self._status is not None:
            self._status.epoch_done(epoch + 1, stopped_early=stopped)

    # -- the folder -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, epochs: int, resume: bool) -> Iterator[RunStatus]:
        """Hold the folder's lock and keep its ``run.json`` true while the block trains (:func:`training_run`)."""
        with training_run(self.out_dir, epochs, resume=resume, enabled=self.enabled) as status:
            self._status = status
            try:
                yield status
            finally:
                self._status = None

    def save_config(self, config: TrainConfig) -> None:
        if self.enabled:
            save_config(config, self.out_dir / CONFIG_FILE)

    def save_model(self, model: Any, config: TrainConfig, *, threshold: float, metrics: dict[str, Any],
                   domains: list[str], threshold_tta: float | None = None,
                   tensors: dict[str, torch.Tensor] | None = None,
                   calibration: dict[str, Calibration] | None = None) -> None:
        """Publish the kept model (``model.safetensors`` + ``model.json``; ``tensors`` in place of the model's own)."""
        if self.enabled:
            save_model_artifact(self.out_dir, model, config, threshold=threshold, threshold_tta=threshold_tta,
                                metrics=metrics, domains=domains, tensors=tensors, calibration=calibration)

    def kept_tensors(self) -> dict[str, torch.Tensor]:
        """The trainable tensors of the model the folder holds (the kept epoch's)."""
        return load_file(str(self.out_dir / MODEL_FILE))


__all__ = ["CONFIG_FILE", "STATE_FILE", "Checkpointer"]
