"""MixUp: one Beta lambda per batch, images and soft targets mixed alike."""

from __future__ import annotations

import pytest
import torch

from mitotype.errors import ConfigError
from mitotype.training.strategies.mixup import MixedBatch, MixUpSettings, maybe_mixup, mixed_domains, mixup_batch


def _constant_images(values: list[float]) -> torch.Tensor:
    """One 3 x 4 x 4 image per value, every pixel equal to that value."""
    return torch.tensor(values, dtype=torch.float64).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()


def test_targets_mixed_exactly_with_the_image_coefficient() -> None:
    targets = torch.tensor([1.0, 0.0, 0.5, 0.25, 1.0, 0.0], dtype=torch.float64)  # exact like Python floats
    images = _constant_images(targets.tolist())
    g = torch.Generator().manual_seed(3)
    mixed = mixup_batch(images, targets, alpha=0.4, generator=g)
    assert 0.0 < mixed.lam < 1.0
    perm = mixed.perm.tolist()
    assert sorted(perm) == list(range(6))
    t = targets.tolist()
    for i in range(6):
        expected = t[i] * mixed.lam + t[perm[i]] * (1.0 - mixed.lam)
        assert float(mixed.targets[i]) == expected
        # same coefficient on the pixels: a constant image of value t mixes to the mixed target
        assert torch.all(mixed.images[i] == mixed.targets[i])
    assert mixed.images.shape == images.shape and mixed.images.dtype == images.dtype


def test_same_seed_same_mix_and_lambda_follows_beta() -> None:
    images, targets = torch.rand(8, 3, 4, 4), torch.rand(8)
    a = mixup_batch(images, targets, 0.4, torch.Generator().manual_seed(11))
    b = mixup_batch(images, targets, 0.4, torch.Generator().manual_seed(11))
    assert a.lam == b.lam and torch.equal(a.perm, b.perm) and torch.equal(a.images, b.images)
    g = torch.Generator().manual_seed(0)
    lams = torch.tensor([mixup_batch(images, targets, 0.2, g).lam for _ in range(4000)])
    # Beta(0.2, 0.2): mean 0.5, variance 1 / (4 (2 alpha + 1)) = 0.1786
    assert float(lams.mean()) == pytest.approx(0.5, abs=0.03)
    assert float(lams.var()) == pytest.approx(1 / (4 * 1.4), abs=0.01)


def test_maybe_mixup_respects_switch_and_probability() -> None:
    images, targets = torch.rand(8, 3, 4, 4), torch.rand(8)
    g = torch.Generator().manual_seed(0)
    off = maybe_mixup(images, targets, MixUpSettings(enabled=False), g)
    assert off.lam == 1.0 and not off.mixed
    assert torch.equal(off.images, images) and torch.equal(off.perm, torch.arange(8))
    assert maybe_mixup(images, targets, MixUpSettings(prob=0.0), g).lam == 1.0
    assert maybe_mixup(images, targets, MixUpSettings(prob=1.0), g).mixed
    hits = sum(maybe_mixup(images, targets, MixUpSettings(prob=0.3), g).mixed for _ in range(2000))
    assert hits / 2000 == pytest.approx(0.3, abs=0.04)


def test_mixed_domains_ignores_cross_domain_mixtures() -> None:
    domains = torch.tensor([0, 0, 1, 2])
    batch = MixedBatch(torch.zeros(4, 3, 2, 2), torch.zeros(4), 0.7, torch.tensor([1, 0, 3, 2]))
    assert mixed_domains(domains, batch).tolist() == [0, 0, -1, -1]
    same = MixedBatch(torch.zeros(4, 3, 2, 2), torch.zeros(4), 1.0, torch.arange(4))
    assert mixed_domains(domains, same).tolist() == [0, 0, 1, 2]


def test_settings_validation() -> None:
    with pytest.raises(ConfigError):
        MixUpSettings(alpha=0.0)
    with pytest.raises(ConfigError):
        MixUpSettings(prob=1.5)
