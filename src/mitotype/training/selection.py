"""Which epoch's model a run keeps, and when patience runs out: the run's selection record.

One job: given each epoch's validation metrics, say whether that epoch's weights are the best so far under
``optim.select_metric`` (ties broken by the other metric), count the epochs without improvement for early
stopping, and keep the per-epoch history. Its state (``best``, ``history``, ``bad_epochs``) is part of the
resume state under the keys earlier versions used, so older ``last_state.pt`` files still resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mitotype.errors import ConfigError
from mitotype.training.resume import RUN_KEYS

METRICS = ("balanced_accuracy", "roc_auc", "last")
"""What can choose the kept epoch (``optim.select_metric``)."""


@dataclass
class Selection:
    """The kept epoch, the history of epochs and the patience count of one run."""

    metric: str = "balanced_accuracy"
    """``balanced_accuracy`` (ties by ROC AUC), ``roc_auc`` (ties by balanced accuracy) or ``last``."""
    patience: int = 0
    """Stop after this many eligible epochs without a better ``metric``; 0 = never."""
    best: dict[str, Any] | None = None
    """The kept epoch's validation metrics with its 1-based ``epoch`` (``None`` until one is kept)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One row per epoch trained (what ``metrics.jsonl`` holds)."""
    bad_epochs: int = 0
    """Eligible epochs since the kept one."""
    best_tensors: dict[str, torch.Tensor] | None = None
    """The kept epoch's trainable tensors, in memory (not part of the resume state: the model file holds them)."""

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"optim.select_metric must be one of {', '.join(METRICS)}, got {self.metric!r}")

    def better(self, val: dict[str, Any]) -> bool:
        """Whether ``val`` beats the kept epoch under :attr:`metric` (anything beats none; ``last`` always)."""
        if self.best is None or self.metric == "last":
            return True
        other = "roc_auc" if self.metric == "balanced_accuracy" else "balanced_accuracy"
        best = self.best
        return (val.get(self.metric) or 0.0, val.get(other) or 0.0) > (best.get(self.metric) or 0.0,
                                                                       best.get(other) or 0.0)

    def offer(self, val: dict[str, Any], epoch: int, eligible: bool = True) -> bool:
        """Consider 0-based ``epoch`` with validation metrics ``val``; whether it is now the kept one. An epoch
        that is not ``eligible`` (weight averaging not started yet) neither wins nor costs patience."""
        if not eligible:
            return False
        if self.better(val):
            self.best = {**val, "epoch": epoch + 1}
            self.bad_epochs = 0
            return True
        self.bad_epochs += 1
        return False

    def add(self, row: dict[str, Any]) -> None:
        """Append one epoch's row to the history."""
        self.history.append(row)

    @property
    def stop(self) -> bool:
        """Whether patience has run out."""
        return bool(self.patience and self.bad_epochs >= self.patience)

    def state_dict(self) -> dict[str, Any]:
        """The part of the resume state that is this record's (:data:`~mitotype.training.resume.RUN_KEYS`)."""
        return {"best": self.best, "history": self.history, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (or a resume state holding its keys)."""
        self.best, self.history, self.bad_epochs = (state[key] for key in RUN_KEYS)


__all__ = ["METRICS", "Selection"]
