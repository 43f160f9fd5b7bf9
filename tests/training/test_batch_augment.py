"""Batched augmentation, HED colour deconvolution and dihedral TTA."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mitotype.errors import ConfigError
from mitotype.models.views import dihedral, dihedral_mean, dihedral_views
from mitotype.training.batch_augment import (
    HED_FROM_RGB,
    RGB_FROM_HED,
    AugmentSettings,
    BatchAugment,
    hed_to_rgb,
    rgb_to_hed,
)

ALL_OFF = dict(
    dihedral=False,
    hed_sigma=0.0,
    hed_bias=0.0,
    brightness=0.0,
    contrast=0.0,
    saturation=0.0,
    blur_prob=0.0,
    scale=(1.0, 1.0),
    translate=0.0,
)


def _batch(b: int = 6, size: int = 32, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_ranges_and_dtype(dtype: torch.dtype) -> None:
    x = _batch(dtype=dtype)
    aug = BatchAugment(AugmentSettings(blur_prob=0.5, hed_sigma=0.2, hed_bias=0.05, brightness=0.5))
    y = aug(x, generator=_gen(1))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(x, y)


def test_same_seed_same_output_different_seed_different() -> None:
    x = _batch(b=16)
    aug = BatchAugment(AugmentSettings(blur_prob=0.5))
    assert torch.equal(aug(x, generator=_gen(5)), aug(x, generator=_gen(5)))
    assert not torch.equal(aug(x, generator=_gen(5)), aug(x, generator=_gen(6)))


def test_identity_when_everything_is_off() -> None:
    x = _batch()
    assert torch.equal(BatchAugment(AugmentSettings(**ALL_OFF))(x, generator=_gen(0)), x)
    master_off = BatchAugment(AugmentSettings(enabled=False))
    assert master_off(x, generator=_gen(0)) is x


def test_switching_one_component_off_keeps_the_others_draws() -> None:
    s_on, s_off = AugmentSettings(), AugmentSettings(blur_prob=0.0)
    a = BatchAugment(s_on).sample_params(8, _gen(3))
    b = BatchAugment(s_off).sample_params(8, _gen(3))
    assert torch.equal(a.dihedral, b.dihedral) and torch.equal(a.scale, b.scale)


def test_dihedral_only_applies_the_drawn_transform_exactly() -> None:
    x = _batch(b=24)
    aug = BatchAugment(AugmentSettings(**{**ALL_OFF, "dihedral": True}))
    params = aug.sample_params(24, _gen(2))
    assert len(set(params.dihedral.tolist())) > 4
    y = aug.apply(x, params)
    for i, k in enumerate(params.dihedral.tolist()):
        assert torch.equal(y[i], dihedral(x[i], k))


def test_translate_is_a_fraction_of_the_patch_side() -> None:
    x = _batch(b=1, size=64)
    aug = BatchAugment(AugmentSettings(**{**ALL_OFF, "translate": 0.25}))
    params = aug.sample_params(1, _gen(0))
    params.shift[:] = torch.tensor([[4 / 64, 0.0]])  # 4 pixels to the right in sampling coordinates
    params.scale[:] = 1.0
    y = aug.apply(x, params)
    torch.testing.assert_close(y[..., :, :-4], x[..., :, 4:], atol=1e-5, rtol=0)


def test_scale_zooms_about_the_centre() -> None:
    x = torch.zeros(1, 3, 32, 32)
    x[..., 12:20, 12:20] = 1.0  # 8 x 8 square in the middle
    aug = BatchAugment(AugmentSettings(**{**ALL_OFF, "scale": (0.5, 2.0), "pad_mode": "zeros"}))
    params = aug.sample_params(1, _gen(0))
    params.scale[:] = 2.0
    y = aug.apply(x, params)
    # twice the side, four times the area
    assert float(y.sum()) == pytest.approx(4 * float(x.sum()), rel=0.05)
    assert float(y[0, 0, 16, 16]) == 1.0 and float(y[0, 0, 2, 2]) == 0.0


def test_blur_matches_a_direct_per_sample_gaussian() -> None:
    x = _batch(b=5, size=24)
    aug = BatchAugment(AugmentSettings(**{**ALL_OFF, "blur_prob": 0.6, "blur_sigma": (0.5, 1.5)}))
    params = aug.sample_params(5, _gen(4))
    params.blur[:] = torch.tensor([True, False, True, True, False])
    y = aug.apply(x, params)
    radius = math.ceil(3 * 1.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    for i in range(5):
        if not params.blur[i]:
            assert torch.equal(y[i], x[i])
            continue
        k = torch.exp(-(offsets**2) / (2 * float(params.blur_sigma[i]) ** 2))
        k2d = torch.outer(k, k) / k.sum() ** 2
        padded = F.pad(x[i : i + 1], (radius,) * 4, mode="reflect")
        direct = F.conv2d(padded, k2d.expand(3, 1, -1, -1).contiguous(), groups=3)
        torch.testing.assert_close(y[i : i + 1], direct, atol=1e-5, rtol=0)


def test_colour_factors_have_their_meaning() -> None:
    x = _batch(b=2)
    aug = BatchAugment(AugmentSettings(**{**ALL_OFF, "saturation": 1.0}))
    params = aug.sample_params(2, _gen(0))
    params.saturation[:] = 0.0  # fully desaturated: all channels equal the luma
    y = aug.apply(x, params)
    torch.testing.assert_close(y[:, 0], y[:, 1])
    torch.testing.assert_close(y[:, 1], y[:, 2])
    aug = BatchAugment(AugmentSettings(**{**ALL_OFF, "contrast": 1.0}))
    params = aug.sample_params(2, _gen(0))
    params.contrast[:] = 0.0  # no contrast: a flat image at the mean grey
    y = aug.apply(x, params)
    assert float(y.std(dim=(1, 2, 3)).max()) < 1e-6


def test_hed_jitter_changes_colour_and_zero_jitter_is_identity() -> None:
    x = _batch().clamp(1e-3, 1.0)
    aug = BatchAugment(AugmentSettings(**{**ALL_OFF, "hed_sigma": 0.3, "hed_bias": 0.02}))
    params = aug.sample_params(x.shape[0], _gen(0))
    assert not torch.allclose(aug.apply(x, params), x, atol=1e-3)
    params.hed_scale[:] = 1.0
    params.hed_shift[:] = 0.0
    torch.testing.assert_close(aug.apply(x, params), x, atol=2e-5, rtol=0)


# -- HED colour deconvolution ---------------------------------------------------------------------------


def test_hed_matrix_is_skimages() -> None:
    # skimage.color.hed_from_rgb, as printed by skimage (inverse of the Ruifrok-Johnston stain vectors)
    known = torch.tensor(
        [
            [1.87798274, -1.00767869, -0.55611582],
            [-0.06590806, 1.13473037, -0.1355218],
            [-0.60190736, -0.48041419, 1.57358807],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(HED_FROM_RGB, known, atol=1e-8, rtol=0)
    torch.testing.assert_close(RGB_FROM_HED @ HED_FROM_RGB, torch.eye(3, dtype=torch.float64))


def test_hed_known_values() -> None:
    white = torch.ones(1, 3, 1, 1, dtype=torch.float64)
    torch.testing.assert_close(rgb_to_hed(white), torch.zeros(1, 3, 1, 1, dtype=torch.float64))
    # a pixel stained by haematoxylin alone at concentration c has intensity 1e-6 ** (c * stain vector)
    for stain, vector in enumerate(([0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78])):
        c = 0.2
        rgb = torch.tensor([1e-6 ** (c * v) for v in vector], dtype=torch.float64).view(1, 3, 1, 1)
        expected = torch.zeros(1, 3, 1, 1, dtype=torch.float64)
        expected[0, stain] = c
        torch.testing.assert_close(rgb_to_hed(rgb), expected, atol=1e-12, rtol=0)
        torch.testing.assert_close(hed_to_rgb(expected), rgb, atol=1e-12, rtol=0)
    # a typical nucleus purple: strong haematoxylin, little eosin
    purple = torch.tensor([0.35, 0.20, 0.55], dtype=torch.float64).view(1, 3, 1, 1)
    h, e, _ = rgb_to_hed(purple).flatten().tolist()
    assert h > 0.05 and h > e


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_hed_round_trip_is_identity(dtype: torch.dtype, tol: float) -> None:
    x = _batch(b=3, size=16, dtype=dtype).clamp_min(1e-4)
    torch.testing.assert_close(hed_to_rgb(rgb_to_hed(x)), x, atol=tol, rtol=0)
    # any leading dims: a single image works too
    torch.testing.assert_close(rgb_to_hed(x[0]), rgb_to_hed(x)[0])
    assert float(rgb_to_hed(x, clip=True).min()) >= 0.0


def test_hed_matches_skimage_when_installed() -> None:
    color = pytest.importorskip("skimage.color")
    x = _batch(b=2, size=8, dtype=torch.float64)
    ours = rgb_to_hed(x, clip=True).permute(0, 2, 3, 1).numpy()
    theirs = np.stack([color.rgb2hed(img) for img in x.permute(0, 2, 3, 1).numpy()])
    np.testing.assert_allclose(ours, theirs, atol=1e-10)
    back = hed_to_rgb(torch.from_numpy(theirs).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(back, np.stack([color.hed2rgb(h) for h in theirs]), atol=1e-10)


# -- dihedral TTA ---------------------------------------------------------------------------------------


def test_dihedral_views_are_the_eight_distinct_transforms() -> None:
    x = _batch(b=2, size=5)  # random pixels: no symmetry
    views = dihedral_views(x)
    assert views.shape == (16, 3, 5, 5)
    img = x[1].numpy()
    expected = [np.rot90(img, k, axes=(1, 2)) for k in range(4)]
    expected += [np.rot90(img[:, :, ::-1], k, axes=(1, 2)) for k in range(4)]
    for v in range(8):
        np.testing.assert_array_equal(views[v * 2 + 1].numpy(), expected[v])  # view-major layout
    flat = {views[v * 2 + 1].numpy().tobytes() for v in range(8)}
    assert len(flat) == 8
    assert torch.equal(views[:2], x)


def test_dihedral_mean_reduces_views_and_is_invariant() -> None:
    x = _batch(b=3, size=6, dtype=torch.float64)
    pooled = dihedral_mean(dihedral_views(x))
    assert pooled.shape == x.shape
    # the average over the group is the same for any transformed input
    torch.testing.assert_close(dihedral_mean(dihedral_views(dihedral(x, 5))), pooled)
    scores = torch.arange(24, dtype=torch.float64)  # view v, image i -> 3 v + i
    torch.testing.assert_close(dihedral_mean(scores), torch.tensor([10.5, 11.5, 12.5], dtype=torch.float64))
    with pytest.raises(ValueError):
        dihedral_mean(torch.zeros(10))


def test_settings_validation() -> None:
    with pytest.raises(ConfigError):
        AugmentSettings(scale=(1.2, 0.8))
    with pytest.raises(ConfigError):
        AugmentSettings(pad_mode="wrap")
    with pytest.raises(ConfigError):
        AugmentSettings(blur_prob=2.0)
    with pytest.raises(ConfigError):
        AugmentSettings(scale=[0.9])  # type: ignore[arg-type]
    assert AugmentSettings(scale=[0.8, 1.2]).scale == (0.8, 1.2)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BatchAugment()(torch.rand(2, 3, 8, 10), generator=_gen(0))
