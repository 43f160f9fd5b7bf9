"""MixUp on images and soft targets, as a strategy (the mixing itself is :mod:`mitotype.training.mixup`)."""

from __future__ import annotations

from dataclasses import replace

import torch

from mitotype.training.mixup import MixUpSettings, maybe_mixup, mixed_domains
from mitotype.training.strategies.base import Batch, Strategy


class MixUp(Strategy):
    """With probability ``prob`` a batch is mixed with a permutation of itself (after augmentation)."""

    name = "mixup"
    section = "mixup"
    settings_type = MixUpSettings
    summary = "MixUp on images and soft targets."

    def transform(self, batch: Batch, generator: torch.Generator) -> Batch:
        if not self.settings.enabled:
            return batch  # nothing drawn: the other strategies' draws stay where they were
        mixed = maybe_mixup(batch.images, batch.targets, self.settings, generator)
        return replace(batch, images=mixed.images, targets=mixed.targets,
                       domains=mixed_domains(batch.domains, mixed))
