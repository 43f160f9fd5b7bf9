"""Batched, device-agnostic augmentation of figure patches for training.

:class:`BatchAugment` works on a whole float batch ``B x 3 x H x W`` in [0, 1] on whatever device it is
on, with every per-sample parameter drawn from a caller-supplied :class:`torch.Generator`, so a run is
reproducible. Stain variation (the main domain shift between scanners and labs) is simulated in
haematoxylin-eosin-DAB space (Ruifrok & Johnston colour deconvolution, as ``skimage.color.rgb2hed``),
then generic colour jitter, scale/translation, blur; mitotic figures have no canonical orientation, so
the 8 dihedral transforms are free label-preserving views for training and for TTA.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mitotype.errors import ConfigError
from mitotype.models.views import dihedral
from mitotype.settings import Settings, one_of, value_range

RGB_FROM_HED = torch.tensor(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64
)
"""Ruifrok-Johnston stain vectors (rows: haematoxylin, eosin, DAB), as in ``skimage.color``."""
HED_FROM_RGB = torch.linalg.inv(RGB_FROM_HED)
"""Colour-deconvolution matrix: row vector of optical densities @ this = stain concentrations."""
_LOG_FLOOR = 1e-6
"""Intensities are floored here before the log; optical densities are divided by -log(1e-6), like
skimage, so stain values are in the same units as ``skimage.color.rgb2hed``."""
_LOG_ADJUST = math.log(_LOG_FLOOR)


def _mix_channels(x: Tensor, matrix: Tensor) -> Tensor:
    """``out[..., j, h, w] = sum_i x[..., i, h, w] * matrix[i, j]`` (a per-pixel row vector @ matrix)."""
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"expected (..., 3, H, W), got {tuple(x.shape)}")
    m = matrix.to(device=x.device, dtype=x.dtype)
    return torch.einsum("...ihw,ij->...jhw", x, m)


def rgb_to_hed(rgb: Tensor, clip: bool = False) -> Tensor:
    """RGB in [0, 1] (channel dim -3, any leading dims) to HED stain concentrations.

    Matches ``skimage.color.rgb2hed`` when ``clip=True`` (negative concentrations set to 0). The default
    keeps them, which makes :func:`hed_to_rgb` an exact inverse (needed to jitter stains without
    changing pixels whose jitter is zero).
    """
    od = torch.log(rgb.clamp_min(_LOG_FLOOR)) / _LOG_ADJUST
    hed = _mix_channels(od, HED_FROM_RGB)
    return hed.clamp_min(0.0) if clip else hed


def hed_to_rgb(hed: Tensor) -> Tensor:
    """HED stain concentrations back to RGB in [0, 1] (``skimage.color.hed2rgb``)."""
    log_rgb = _mix_channels(hed, RGB_FROM_HED) * _LOG_ADJUST
    return torch.exp(log_rgb).clamp(0.0, 1.0)


def _pair(name: str, value: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"augment: {name} must be a pair [low, high], got {value!r}") from None
    if lo > hi:
        raise ConfigError(f"augment: {name} must have low <= high, got {value!r}")
    return lo, hi


@dataclass
class AugmentSettings(Settings):
    """Training augmentation; every component is switched off by its neutral value."""

    enabled: bool = True
    """Master switch: when off the batch passes through untouched."""
    dihedral: bool = True
    """Random one of the 8 flips/quarter turns per figure (exact, no interpolation)."""
    hed_sigma: float = field(default=0.05, metadata=value_range(0, 1))
    """Stain strength jitter: each of H, E, D is multiplied by U(1 - sigma, 1 + sigma) per figure
    (0 = off)."""
    hed_bias: float = field(default=0.01, metadata=value_range(0, 1))
    """Stain offset jitter: U(-bias, bias) is added to each of H, E, D per figure, in skimage rgb2hed units
    (optical density / 13.8; a white-to-dark range is ~0-0.3) (0 = off)."""
    brightness: float = field(default=0.1, metadata=value_range(0, 1))
    """Intensity multiplied by U(1 - b, 1 + b) per figure (0 = off)."""
    contrast: float = field(default=0.1, metadata=value_range(0, 1))
    """Blend toward the figure's mean grey with factor U(1 - c, 1 + c) (0 = off)."""
    saturation: float = field(default=0.1, metadata=value_range(0, 1))
    """Blend toward the figure's greyscale with factor U(1 - s, 1 + s) (0 = off)."""
    blur_prob: float = field(default=0.1, metadata=value_range(0, 1))
    """Probability that a figure is Gaussian-blurred (focus variation between scanners) (0 = off)."""
    blur_sigma: tuple[float, float] = (0.1, 1.0)
    """Blur sigma range in pixels, drawn uniformly per blurred figure."""
    scale: tuple[float, float] = (0.9, 1.1)
    """Zoom range, drawn log-uniformly (>1 zooms in); (1, 1) = off."""
    translate: float = field(default=0.05, metadata=value_range(0, 0.5))
    """Maximum shift as a fraction of the patch side, uniform per axis (0 = off)."""
    pad_mode: str = field(default="reflection", metadata=one_of("reflection", "border", "zeros"))
    """How scale/translate fill pixels from outside the patch: ``reflection``, ``border`` or ``zeros``."""

    def __post_init__(self) -> None:
        self.blur_sigma = _pair("blur_sigma", self.blur_sigma)  # lists from YAML become (low, high)
        self.scale = _pair("scale", self.scale)
        super().__post_init__()

    def check(self) -> None:
        if self.blur_prob > 0 and not self.blur_sigma[0] > 0:
            raise ConfigError(f"augment: blur_sigma must be > 0, got {self.blur_sigma}")
        if not self.scale[0] > 0:
            raise ConfigError(f"augment: scale must be > 0, got {self.scale}")

    @property
    def uses_hed(self) -> bool:
        return self.hed_sigma > 0 or self.hed_bias > 0

    @property
    def uses_affine(self) -> bool:
        return self.scale != (1.0, 1.0) or self.translate > 0


@dataclass
class AugmentParams:
    """Per-figure random parameters of one batch (CPU tensors, first dim B)."""

    dihedral: Tensor
    """(B,) int64 in 0..7, see :func:`dihedral`."""
    hed_scale: Tensor
    """(B, 3) stain multipliers."""
    hed_shift: Tensor
    """(B, 3) stain offsets."""
    brightness: Tensor
    """(B,) intensity factors."""
    contrast: Tensor
    """(B,) contrast factors."""
    saturation: Tensor
    """(B,) saturation factors."""
    blur: Tensor
    """(B,) bool: blur this figure."""
    blur_sigma: Tensor
    """(B,) blur sigma in pixels (used where ``blur``)."""
    scale: Tensor
    """(B,) zoom factors."""
    shift: Tensor
    """(B, 2) shift (x, y) as a fraction of the patch side."""


def _gray(x: Tensor) -> Tensor:
    """ITU-R 601 luma, (B, 1, H, W), as torchvision's ``rgb_to_grayscale``."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).clamp(0.0, 1.0)


def _gaussian_blur(x: Tensor, sigma: Tensor, max_sigma: float) -> Tensor:
    """Separable Gaussian blur of (n, C, H, W) with one sigma per image, as two grouped depthwise convs."""
    n, c, h, w = x.shape
    radius = max(1, math.ceil(3.0 * max_sigma))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(device=x.device, dtype=x.dtype)[:, None]
    kernel = torch.exp(-(offsets[None, :] ** 2) / (2.0 * s**2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (n*C, K)
    mode = "reflect" if radius < min(h, w) else "replicate"
    flat = x.reshape(1, n * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode=mode), kernel[:, None, None, :], groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode=mode), kernel[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


class BatchAugment(nn.Module):
    """Random augmentation of a float batch B x 3 x H x W in [0, 1]; returns the same shape, dtype and
    device, values in [0, 1].

    Order: dihedral (exact index ops, grouped by transform), scale/translate (one ``affine_grid`` +
    ``grid_sample``), HED stain jitter, brightness, contrast, saturation, Gaussian blur (one grouped
    depthwise conv over the blurred figures). Parameters come from :meth:`sample_params`, which always
    draws every parameter in a fixed order, so switching one component off leaves the others' draws as
    they were. The module always augments; the trainer calls it on training batches only.
    """

    def __init__(self, settings: AugmentSettings | None = None):
        super().__init__()
        self.settings = settings or AugmentSettings()

    def sample_params(self, batch_size: int, generator: torch.Generator | None = None) -> AugmentParams:
        """Draw one batch's parameters from ``generator`` (on its device), returned on the CPU."""
        s = self.settings
        dev = generator.device if generator is not None else torch.device("cpu")

        def uniform(lo: float, hi: float, *shape: int) -> Tensor:
            u = torch.rand(batch_size, *shape, generator=generator, device=dev, dtype=torch.float64)
            return (lo + (hi - lo) * u).cpu()

        dihedral_k = torch.randint(0, 8, (batch_size,), generator=generator, device=dev).cpu()
        hed_scale = uniform(1 - s.hed_sigma, 1 + s.hed_sigma, 3)
        hed_shift = uniform(-s.hed_bias, s.hed_bias, 3)
        brightness = uniform(1 - s.brightness, 1 + s.brightness)
        contrast = uniform(1 - s.contrast, 1 + s.contrast)
        saturation = uniform(1 - s.saturation, 1 + s.saturation)
        blur = uniform(0.0, 1.0) < s.blur_prob
        blur_sigma = uniform(*s.blur_sigma)
        log_lo, log_hi = math.log(s.scale[0]), math.log(s.scale[1])
        scale = uniform(log_lo, log_hi).exp()
        shift = uniform(-s.translate, s.translate, 2)
        return AugmentParams(
            dihedral_k, hed_scale, hed_shift, brightness, contrast, saturation, blur, blur_sigma, scale, shift
        )

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if not self.settings.enabled:
            return x
        return self.apply(x, self.sample_params(x.shape[0], generator))

    def apply(self, x: Tensor, params: AugmentParams) -> Tensor:
        """Augment ``x`` with given parameters (deterministic)."""
        s = self.settings
        if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise ValueError(f"expected a float batch B x 3 x H x W, got {x.dtype} {tuple(x.shape)}")
        if not s.enabled:
            return x
        out = x.float()
        b = out.shape[0]

        def per_sample(v: Tensor) -> Tensor:
            return v.to(device=out.device, dtype=out.dtype).reshape(b, -1, 1, 1)

        if s.dihedral:
            if out.shape[-1] != out.shape[-2]:
                raise ValueError(f"dihedral augmentation needs square patches, got {tuple(out.shape[-2:])}")
            flipped = torch.empty_like(out)
            for k in range(8):
                sel = (params.dihedral == k).nonzero().flatten()
                if sel.numel():
                    idx = sel.to(out.device)
                    flipped[idx] = dihedral(out.index_select(0, idx), k)
            out = flipped
        if s.uses_affine:
            theta = torch.zeros(b, 2, 3, dtype=torch.float64)
            theta[:, 0, 0] = 1.0 / params.scale
            theta[:, 1, 1] = 1.0 / params.scale
            theta[:, :, 2] = 2.0 * params.shift  # normalised coordinates span 2 per side
            theta = theta.to(device=out.device, dtype=out.dtype)
            grid = F.affine_grid(theta, list(out.shape), align_corners=False)
            out = F.grid_sample(out, grid, mode="bilinear", padding_mode=s.pad_mode, align_corners=False)
        if s.uses_hed:
            hed = rgb_to_hed(out) * per_sample(params.hed_scale) + per_sample(params.hed_shift)
            out = hed_to_rgb(hed)
        if s.brightness > 0:
            out = (out * per_sample(params.brightness)).clamp(0.0, 1.0)
        if s.contrast > 0:
            mean = _gray(out).mean(dim=(-3, -2, -1), keepdim=True)
            c = per_sample(params.contrast)
            out = (c * out + (1.0 - c) * mean).clamp(0.0, 1.0)
        if s.saturation > 0:
            sat = per_sample(params.saturation)
            out = (sat * out + (1.0 - sat) * _gray(out)).clamp(0.0, 1.0)
        if s.blur_prob > 0:
            sel = params.blur.nonzero().flatten()
            if sel.numel():
                idx = sel.to(out.device)
                blurred = _gaussian_blur(out.index_select(0, idx), params.blur_sigma[sel], s.blur_sigma[1])
                out = out.index_copy(0, idx, blurred)
        return out.clamp(0.0, 1.0).to(x.dtype)
