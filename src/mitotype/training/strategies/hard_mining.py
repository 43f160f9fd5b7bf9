"""Hard-example mining: which training figures the model currently gets wrong, and how confidently; the
miner and the strategy that runs it.

Every ``every_n_epochs`` the trainer scores the training set and passes p(atypical) here; the miner
turns each figure's error into a difficulty in [0, 1], smooths it over rounds with an EMA, and the
sampler draws figures up to ``1 + strategies.sampling.hard_weight`` times as often as easy ones of the
same domain and class.
Normals called atypical with confidence (hard negatives) and atypicals missed with confidence score 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mitotype.errors import ConfigError
from mitotype.settings import Settings, value_range
from mitotype.training.strategies.base import Strategy


@dataclass
class HardMiningSettings(Settings):
    """When and how strongly misclassified figures are oversampled."""

    enabled: bool = True
    """Mine at all; when off every difficulty stays 0."""
    every_n_epochs: int = field(default=1, metadata=value_range(1, None))
    """Re-score the training set after every n-th epoch."""
    margin: float = field(default=0.25, metadata=value_range(0, 0.5, lo_open=True))
    """Confidence margin around the 0.5 decision: error |p - t| <= 0.5 - margin (right by at least the
    margin) is difficulty 0, error >= 0.5 + margin (wrong by at least the margin) is difficulty 1, linear
    in between; an undecided p = 0.5 on a hard label is 0.5."""
    momentum: float = field(default=0.5, metadata=value_range(0, 1, hi_open=True))
    """EMA momentum across rounds: ``d = momentum * d + (1 - momentum) * d_round`` (the first round is
    taken as is), so a figure's weight decays over a few rounds once the model gets it right."""

    def check(self) -> None:
        if int(self.every_n_epochs) != self.every_n_epochs:
            raise ConfigError(
                f"hard_mining: every_n_epochs must be an integer >= 1, got {self.every_n_epochs}"
            )


def round_difficulty(
    probs: np.ndarray, labels: np.ndarray, soft_labels: np.ndarray | None, margin: float
) -> np.ndarray:
    """One round's difficulty: ``clip((|p - t| - (0.5 - margin)) / (2 * margin), 0, 1)``.

    ``t`` is the soft label where given (a 2-of-3 atypical figure scored 0.67 is right, not half wrong),
    else the hard label.
    """
    target = labels if soft_labels is None else soft_labels
    err = np.abs(probs - target)
    return np.clip((err - (0.5 - margin)) / (2.0 * margin), 0.0, 1.0)


def _vector(name: str, values: Sequence[float] | np.ndarray | Tensor, n: int | None) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().double().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or (n is not None and arr.size != n):
        raise ValueError(f"{name} must be 1-D with {n} entries, got shape {arr.shape}")
    if not np.all((arr >= 0) & (arr <= 1)):
        raise ValueError(f"{name} must lie in [0, 1] (and not be NaN)")
    return arr


class HardExampleMiner:
    """Keeps a per-figure difficulty in [0, 1] for the whole training set, updated in mining rounds."""

    def __init__(self, settings: HardMiningSettings | None, n: int):
        if n < 1:
            raise ValueError(f"the training set must hold at least one figure, got n={n}")
        self.settings = settings or HardMiningSettings()
        self.num_samples = int(n)
        self.difficulty = np.zeros(self.num_samples, dtype=np.float64)
        """Current difficulty of each training figure, in training-set order."""
        self.rounds = 0
        """Mining rounds folded in so far."""

    def due(self, epoch: int) -> bool:
        """Whether to mine after finishing (0-based) ``epoch``."""
        return self.settings.enabled and (int(epoch) + 1) % self.settings.every_n_epochs == 0

    def update(
        self,
        probs: Sequence[float] | np.ndarray | Tensor,
        labels: Sequence[int] | np.ndarray | Tensor,
        soft_labels: Sequence[float] | np.ndarray | Tensor | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
    ) -> np.ndarray:
        """Fold one round of p(atypical) scores in and return the updated difficulty (a copy).

        ``probs``/``labels``/``soft_labels`` cover the whole training set, or the figures at ``indices``
        (the others keep their difficulty). A disabled miner leaves everything at 0.
        """
        if not self.settings.enabled:
            return self.difficulty.copy()
        if indices is None:
            idx = np.arange(self.num_samples)
        else:
            idx = np.asarray(indices, dtype=np.int64)
            if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= self.num_samples:
                raise ValueError(f"indices must be 1-D within [0, {self.num_samples})")
            if np.unique(idx).size != idx.size:
                raise ValueError("indices must not repeat")
        n = idx.size
        p = _vector("probs", probs, n)
        y = _vector("labels", labels, n)
        soft = None if soft_labels is None else _vector("soft_labels", soft_labels, n)
        fresh = round_difficulty(p, y, soft, self.settings.margin)
        if self.rounds == 0:
            self.difficulty[idx] = fresh
        else:
            m = self.settings.momentum
            self.difficulty[idx] = m * self.difficulty[idx] + (1.0 - m) * fresh
        self.rounds += 1
        return self.difficulty.copy()

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors only (safetensors-ready); :meth:`load_state_dict` restores them bit for bit."""
        return {
            "difficulty": torch.from_numpy(self.difficulty.copy()),
            "rounds": torch.tensor(self.rounds, dtype=torch.int64),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        diff = state["difficulty"].detach().cpu().to(torch.float64).numpy().copy()
        if diff.shape != (self.num_samples,):
            raise ValueError(
                f"hard-mining state holds {diff.shape[0] if diff.ndim else 0} figures, "
                f"the training set has {self.num_samples}"
            )
        self.difficulty = diff
        self.rounds = int(state["rounds"])


class HardMining(Strategy):
    """Every ``every_n_epochs`` epochs, scores the training figures and updates their difficulty."""

    name = "hard_mining"
    section = "hard_mining"
    settings_type = HardMiningSettings
    summary = "Periodic re-scoring of the training set to up-weight hard figures."
    state_key = "miner"

    miner: HardExampleMiner | None = None

    def setup(self, model: torch.nn.Module) -> None:
        self.miner = HardExampleMiner(self.settings, n=len(self.context.train_idx))

    def difficulty(self) -> np.ndarray | None:
        # None until a round has run (the miner's state, rounds included, is this strategy's resume state)
        if self.miner is None or self.miner.rounds == 0:
            return None
        return self.miner.difficulty.copy()

    def state_dict(self) -> dict[str, Any]:
        return self.miner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.miner.load_state_dict(state)

    def on_epoch_start(self, epoch: int) -> None:
        if epoch == 0 or not self.miner.due(epoch - 1):
            return
        context = self.context
        scores = context.predict(context.train_idx)
        soft = context.targets[context.train_idx] if context.soft_targets else None
        self.miner.update(scores, context.labels[context.train_idx], soft_labels=soft)
