"""Soft labels: training targets blended from the experts' votes and the hard label."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mitotype.settings import Settings, value_range
from mitotype.training.strategies.base import Strategy


@dataclass
class SoftLabelSettings(Settings):
    """Targets blended from the experts' votes and the hard label."""

    enabled: bool = True
    """Use the vote fraction at all; off means hard 0/1 targets."""
    weight: float = field(default=0.5, metadata=value_range(0.0, 1.0))
    """target = weight * soft + (1 - weight) * hard."""


class SoftLabels(Strategy):
    """Borderline figures (experts split) get targets between 0 and 1 instead of a hard label."""

    name = "soft_labels"
    section = "soft_labels"
    settings_type = SoftLabelSettings
    summary = "Targets from the experts' votes."

    def blend_targets(self, targets: np.ndarray, soft: np.ndarray) -> np.ndarray | None:
        if not self.settings.enabled:
            return None
        w = self.settings.weight
        return (w * soft + (1.0 - w) * targets).astype(np.float32)
