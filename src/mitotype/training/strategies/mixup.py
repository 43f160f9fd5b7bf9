"""MixUp (Zhang et al., 2018) on image batches with soft atypical targets, and the strategy that applies it.

One coefficient per batch, drawn from Beta(alpha, alpha), mixes the images and the targets alike, so the
mixed target is the atypical fraction of the mixed image. Domain labels of cross-domain mixtures are
masked (:func:`mixed_domains`) so the domain head never learns from a mixture of two scanners.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from mitotype.settings import Settings, value_range
from mitotype.training.strategies.base import Batch, Strategy


@dataclass
class MixUpSettings(Settings):
    """Whether and how strongly batches are mixed."""

    enabled: bool = True
    """Apply MixUp at all."""
    alpha: float = field(default=0.2, metadata=value_range(0, None, lo_open=True))
    """Beta(alpha, alpha) concentration: small values keep most mixtures close to one of the two images."""
    prob: float = field(default=0.5, metadata=value_range(0, 1))
    """Probability that a given batch is mixed; the other batches are left as they are."""


@dataclass
class MixedBatch:
    """``images = lam * x + (1 - lam) * x[perm]`` and the same for ``targets``."""

    images: Tensor
    """Mixed images, same shape, dtype and device as the input."""
    targets: Tensor
    """Mixed soft targets in [0, 1]."""
    lam: float
    """Mixing coefficient of the original sample (1.0 = not mixed)."""
    perm: Tensor
    """Partner of each sample (``arange`` when not mixed), on the images' device."""

    @property
    def mixed(self) -> bool:
        return self.lam < 1.0


def _beta(alpha: float, generator: torch.Generator | None) -> float:
    """One Beta(alpha, alpha) draw driven by ``generator`` (torch has no seeded Beta sampler)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=_gen_device(generator)))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def mixup_batch(
    images: Tensor, targets: Tensor, alpha: float, generator: torch.Generator | None = None
) -> MixedBatch:
    """Mix every sample with a random partner of the same batch using one Beta(alpha, alpha) lambda."""
    if images.shape[0] != targets.shape[0]:
        raise ValueError(f"images ({images.shape[0]}) and targets ({targets.shape[0]}) differ in batch size")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    lam = _beta(alpha, generator)
    perm = torch.randperm(images.shape[0], generator=generator, device=_gen_device(generator))
    perm = perm.to(images.device)
    mixed_images = images * lam + images[perm] * (1.0 - lam)
    t = targets.to(images.device)
    mixed_targets = t * lam + t[perm] * (1.0 - lam)
    return MixedBatch(mixed_images, mixed_targets, lam, perm)


def maybe_mixup(
    images: Tensor, targets: Tensor, settings: MixUpSettings, generator: torch.Generator | None = None
) -> MixedBatch:
    """:func:`mixup_batch` with probability ``settings.prob`` when enabled, else the batch unchanged.

    When disabled nothing is drawn from ``generator``; when enabled the coin is always drawn (also at
    ``prob = 0``), so a run's later draws do not depend on ``prob``. Unmixed batches are returned with ``lam = 1`` and
    the identity ``perm`` so the trainer needs no special case.
    """
    if settings.enabled:
        coin = float(torch.rand((), generator=generator, device=_gen_device(generator)))
        if coin < settings.prob:
            return mixup_batch(images, targets, settings.alpha, generator)
    perm = torch.arange(images.shape[0], device=images.device)
    return MixedBatch(images, targets.to(images.device), 1.0, perm)


def mixed_domains(domains: Tensor, batch: MixedBatch, ignore_index: int = -1) -> Tensor:
    """Domain labels for a mixed batch: a sample mixed with a partner from another domain is ignored."""
    domains = domains.to(batch.perm.device)
    if not batch.mixed:
        return domains
    same = domains == domains[batch.perm]
    return torch.where(same, domains, torch.full_like(domains, ignore_index))


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
