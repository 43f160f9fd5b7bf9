"""Hard-example mining: the training set is re-scored periodically and hard figures are up-weighted."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mitotype.training.hard_mining import HardExampleMiner, HardMiningSettings
from mitotype.training.strategies.base import Strategy


class HardMining(Strategy):
    """Every ``every_n_epochs`` epochs, scores the training figures and updates their difficulty."""

    name = "hard_mining"
    section = "hard_mining"
    settings_type = HardMiningSettings
    summary = "Periodic re-scoring of the training set to up-weight hard figures."
    state_key = "miner"

    miner: HardExampleMiner | None = None

    def setup(self, model: torch.nn.Module) -> None:
        self.miner = HardExampleMiner(self.settings, n=len(self.run.train_idx))

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
        run = self.run
        scores = run.predict(run.train_idx)
        soft = run.targets[run.train_idx] if run.soft_targets else None
        self.miner.update(scores, run.labels[run.train_idx], soft_labels=soft)
