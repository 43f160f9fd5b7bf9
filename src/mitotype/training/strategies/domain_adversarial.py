"""Domain classifier behind gradient reversal: the embedding should carry little domain signal."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from mitotype.settings import Settings, value_range
from mitotype.training.losses import domain_adversarial_loss
from mitotype.training.strategies.base import Batch, RunContext, Strategy


@dataclass
class DomainAdversarialSettings(Settings):
    """Domain classifier behind gradient reversal: the embedding should carry little domain signal."""

    enabled: bool = True
    """Train the domain head through the gradient-reversal layer."""
    weight: float = field(default=0.1, metadata=value_range(0.0, 10.0))
    """Weight of the domain cross-entropy in the loss."""
    max_lambda: float = field(default=1.0, metadata=value_range(0.0, 10.0))
    """Final gradient-reversal coefficient."""
    ramp: Literal["dann", "linear", "constant"] = "dann"
    """Schedule of the coefficient over training: DANN's 2/(1+exp(-10p))-1, linear, or constant."""


def grl_coefficient(fraction_done: float, max_lambda: float, ramp: str) -> float:
    """The gradient-reversal coefficient with ``p = fraction_done`` of the training behind: ``max_lambda`` times
    the ramp (DANN's 2 / (1 + exp(-10 p)) - 1 from 0 to 1, ``p`` itself, or 1); the one place it is computed."""
    if ramp == "constant":
        return max_lambda
    if ramp == "linear":
        return max_lambda * fraction_done
    return max_lambda * (2.0 / (1.0 + math.exp(-10.0 * fraction_done)) - 1.0)


class DomainAdversarial(Strategy):
    """A domain head on the embedding, trained through gradient reversal (needs two training domains)."""

    name = "domain_adversarial"
    section = "domain_adversarial"
    settings_type = DomainAdversarialSettings
    summary = "Domain head behind gradient reversal."
    loss_name = "domain"

    def __init__(self, settings: DomainAdversarialSettings, context: RunContext) -> None:
        super().__init__(settings, context)
        self.active = settings.enabled and len(context.domain_names) >= 2
        if settings.enabled and not self.active:
            context.log("note: one training domain only; the domain-adversarial head is off for this run")

    def domain_classes(self) -> int:
        return len(self.context.domain_names) if self.active else 0

    def leaves_parameters_unused(self) -> bool:
        return not self.active

    def before_forward(self, model: torch.nn.Module, fraction_done: float) -> None:
        if self.active:
            s = self.settings
            model.set_grl_lambda(grl_coefficient(fraction_done, s.max_lambda, s.ramp))

    def loss_term(self, out: Any, batch: Batch) -> tuple[Tensor, float] | None:
        if not self.active or out.domain_logits is None:
            return None
        return domain_adversarial_loss(out.domain_logits.float(), batch.domains), self.settings.weight
