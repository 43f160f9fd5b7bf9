"""Batched tensor augmentation on the training device (stain, colour, geometry, blur)."""

from __future__ import annotations

import torch

from mitotype.training.batch_augment import AugmentSettings, BatchAugment
from mitotype.training.strategies.base import Batch, Strategy


class Augment(Strategy):
    """Each figure of a batch gets its own random view, before figures are mixed."""

    name = "augment"
    section = "augment"
    settings_type = AugmentSettings
    summary = "Batched tensor augmentation on the training device."
    transform_order = -1  # every figure augmented on its own, then mixed (MixUp)

    def setup(self, model: torch.nn.Module) -> None:
        self.augment = BatchAugment(self.settings).to(self.context.device)

    def transform(self, batch: Batch, generator: torch.Generator) -> Batch:
        batch.images = self.augment(batch.images, generator=generator)
        return batch
