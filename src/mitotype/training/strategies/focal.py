"""The classification loss: adaptive focal loss (gamma 0 and adaptation off = weighted BCE)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mitotype.training.losses import AdaptiveFocalLoss, FocalSettings
from mitotype.training.strategies.base import Batch, Strategy


class AdaptiveFocal(Strategy):
    """The classification term of the loss; its ablation switch turns the per-class adaptation off."""

    name = "adaptive_focal"
    section = "focal"
    settings_type = FocalSettings
    summary = "Adaptive focal loss (gamma 0 and adaptation off = weighted BCE)."
    switch = "adaptive"
    state_key = "focal"
    loss_name = "cls"

    def setup(self, model: torch.nn.Module) -> None:
        # pos_weight "auto" must see the class mix the sampler produces, not the raw one, or class
        # imbalance is corrected twice.
        weights = self.context.sampling_weights()
        seen_pos = float(weights[self.context.labels[self.context.train_idx] == 1].sum())
        self.loss = AdaptiveFocalLoss(self.settings, positive_fraction=seen_pos).to(self.context.device)

    def state_dict(self) -> dict[str, Any]:
        return self.loss.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss.load_state_dict(state)

    def loss_term(self, out: Any, batch: Batch) -> tuple[Tensor, float] | None:
        return self.loss(out.logits.float(), batch.targets), 1.0

    def after_backward(self, out: Any, batch: Batch) -> None:
        # the per-class error rates the focusing adapts to follow the global batch under DDP
        err_sum, w_sum = self.loss.batch_stats(out.logits.float(), batch.targets)
        if self.context.world > 1:
            stats = torch.stack([err_sum, w_sum])
            torch.distributed.all_reduce(stats)
            err_sum, w_sum = stats[0], stats[1]
        self.loss.update_from_stats(err_sum, w_sum)
