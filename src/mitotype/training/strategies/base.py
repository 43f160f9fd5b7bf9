"""The strategy plug-in protocol: the hooks through which a training strategy takes part in a run.

A strategy is a class with its own settings dataclass (the ``strategies.<section>`` block of the
configuration) and whichever hooks it needs; every hook has a do-nothing default. The trainer builds one
instance of every registered strategy per run and calls the hooks in registry order at fixed points of
the loop, so a strategy never needs an ``if`` in the trainer. A strategy whose switch is off still gets
its hooks called and must then behave as absent (the switch is what ``mitotype ablate`` turns off).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor


@dataclass
class Batch:
    """One training batch as the strategies see and transform it."""

    images: Tensor
    """B x 3 x H x W float in [0, 1] on the training device."""
    targets: Tensor
    """(B,) float targets in [0, 1] (soft when targets were blended or batches mixed)."""
    domains: Tensor
    """(B,) int64 index of each figure's training domain; -1 = none (ignored by domain losses)."""


@dataclass
class RunContext:
    """What a strategy may read about the run it takes part in (its own state it keeps itself)."""

    labels: np.ndarray
    """Hard 0/1 labels of every record."""
    targets: np.ndarray
    """Training targets of every record (hard labels unless a strategy blended them)."""
    soft_targets: bool
    """Whether ``targets`` were blended from votes (a strategy's ``blend_targets`` returned them)."""
    domains: np.ndarray
    """Training-domain index of every record; -1 for a domain training never saw."""
    domain_names: list[str]
    """The training domains, in index order."""
    train_idx: np.ndarray
    """Record indices of the training figures."""
    device: torch.device
    """Where the model trains."""
    world: int
    """Number of processes (DDP); statistics a strategy keeps must be summed over them."""
    epochs: int
    """Epochs of the run."""
    log: Callable[[str], None]
    """Where notes for the user go."""
    predict: Callable[[np.ndarray], np.ndarray]
    """p(atypical) of the current model for record indices (no augmentation)."""
    sampling_weights: Callable[[], np.ndarray]
    """This epoch's sampling weights of the training figures (all strategies' weights combined)."""
    difficulty: Callable[[], np.ndarray | None]
    """Per-training-figure difficulty in [0, 1] as a strategy measured it (hard-example mining: the strategies'
    :meth:`Strategy.difficulty`, the first that has one), or ``None`` while none has."""


class Strategy:
    """Base class of the training strategies: class attributes describe it, hooks default to no-ops."""

    name: ClassVar[str]
    """Its name in ablations (``mitotype ablate --strategies NAME``)."""
    section: ClassVar[str]
    """Its settings block: ``strategies.<section>`` in the configuration."""
    settings_type: ClassVar[type]
    """The dataclass of its settings (default-constructible)."""
    summary: ClassVar[str] = ""
    """One line describing it (the settings block's docstring in the configuration)."""
    switch: ClassVar[str] = "enabled"
    """The boolean setting that turns it off for an ablation."""
    state_key: ClassVar[str | None] = None
    """Key of its :meth:`state_dict` in the resume state; ``None`` = it keeps no state."""
    loss_name: ClassVar[str | None] = None
    """Column of its loss term in the per-epoch metrics; ``None`` = it adds no loss term."""
    transform_order: ClassVar[int] = 0
    """Batch transforms run in ascending order (per-figure augmentation before mixing figures)."""

    def __init__(self, settings: Any, context: RunContext) -> None:
        self.settings = settings
        self.context = context
        """What this strategy may read about the run it takes part in."""

    @classmethod
    def switch_path(cls) -> str:
        """The override that turns it off: ``strategies.<section>.<switch>``."""
        return f"strategies.{cls.section}.{cls.switch}"

    # -- before the model exists ------------------------------------------------------------------

    def blend_targets(self, targets: np.ndarray, soft: np.ndarray) -> np.ndarray | None:
        """New training targets from the current ones and the vote fractions, or ``None`` to keep them."""
        return None

    def domain_classes(self) -> int:
        """Size of the domain head the model needs (0 = none)."""
        return 0

    def leaves_parameters_unused(self) -> bool:
        """Whether a head of the model gets no gradient in this run (DDP must then look for unused ones)."""
        return False

    # -- once the model exists ----------------------------------------------------------------------

    def setup(self, model: torch.nn.Module) -> None:
        """Build what it needs on the training device (after the model and the optimiser)."""

    def state_dict(self) -> dict[str, Any]:
        """Its state for the resume file (only called when ``state_key`` is set)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    # -- every epoch and batch ----------------------------------------------------------------------

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch's figures are drawn (0-based ``epoch``)."""

    def sampling_weights(self) -> np.ndarray | None:
        """Weights of the training figures for this epoch's draw, or ``None`` for no opinion."""
        return None

    def difficulty(self) -> np.ndarray | None:
        """How hard each training figure is, in [0, 1] (training-set order), for the others to read through
        :attr:`RunContext.difficulty`; ``None`` = not measured (yet). Kept in the strategy's own state."""
        return None

    def transform(self, batch: Batch, generator: torch.Generator) -> Batch:
        """Change a batch before the forward pass; random draws only from ``generator``."""
        return batch

    def before_forward(self, model: torch.nn.Module, fraction_done: float) -> None:
        """Adjust the model before the forward pass, ``fraction_done`` of the training (0 to 1) behind it."""

    def loss_term(self, out: Any, batch: Batch) -> tuple[Tensor, float] | None:
        """Its unweighted loss term and weight for this batch, or ``None`` (no term this batch)."""
        return None

    def after_backward(self, out: Any, batch: Batch) -> None:
        """Called after the backward pass of each batch (statistics that follow the training)."""


__all__ = ["Batch", "RunContext", "Strategy"]
