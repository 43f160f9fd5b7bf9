"""Supervised contrastive loss on the projection head."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from mitotype.settings import Settings, value_range
from mitotype.training.losses import supervised_contrastive_loss
from mitotype.training.strategies.base import Batch, Strategy


@dataclass
class SupConSettings(Settings):
    """Supervised contrastive loss on the projection head."""

    enabled: bool = True
    """Add the contrastive term to the loss."""
    weight: float = field(default=0.1, metadata=value_range(0.0, 10.0))
    """Its weight relative to the classification loss."""
    temperature: float = field(default=0.1, metadata=value_range(0.01, 1.0))
    """Softmax temperature of the pair similarities."""


class SupCon(Strategy):
    """Pulls embeddings of the same class together across domains."""

    name = "supcon"
    section = "supcon"
    settings_type = SupConSettings
    summary = "Supervised contrastive loss."
    loss_name = "supcon"

    def leaves_parameters_unused(self) -> bool:
        return not self.settings.enabled  # the projection head

    def loss_term(self, out: Any, batch: Batch) -> tuple[Tensor, float] | None:
        if not self.settings.enabled:
            return None
        s = self.settings
        return supervised_contrastive_loss(out.projection.float(), batch.targets, s.temperature), s.weight
