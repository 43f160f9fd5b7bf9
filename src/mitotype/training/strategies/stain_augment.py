"""Stain augmentation by stain separation (torch-staintools): each figure's own H and E stains are estimated
(Macenko or Vahadane) and their concentrations perturbed, ``c * alpha + beta`` per stain and figure, inside the
tissue. Beside the fixed-matrix HED jitter of ``augment``, this follows each figure's actual stain vectors.
Off by default; needs the ``stain`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from mitotype.models.stain import CONCENTRATION_SOLVER, eager_staintools, require_staintools
from mitotype.settings import Settings, value_range
from mitotype.training.strategies.base import Batch, Strategy


@dataclass
class StainAugmentSettings(Settings):
    """Stain-matrix augmentation with torch-staintools (Macenko or Vahadane stain separation)."""

    enabled: bool = False
    """Re-stain every training figure (off by default; needs ``pip install 'mitotype[stain]'``)."""
    method: Literal["macenko", "vahadane"] = "macenko"
    """How each figure's stain matrix is estimated: ``macenko`` (fast) or ``vahadane`` (sparse dictionary
    learning: GPU only in practice)."""
    sigma_alpha: float = field(default=0.2, metadata=value_range(0.0, 1.0))
    """Each stain's concentration is multiplied by U(1 - sigma_alpha, 1 + sigma_alpha) per figure."""
    sigma_beta: float = field(default=0.2, metadata=value_range(0.0, 1.0))
    """U(-r, r) is added to each stain's concentration, r = sigma_beta x its 99th percentile in the figure."""
    luminosity_threshold: float = field(default=0.8, metadata=value_range(0.0, 1.0, lo_open=True))
    """Pixels with CIELAB lightness below this fraction count as tissue; only they are re-stained."""

    def check(self) -> None:
        if self.enabled:
            require_staintools("strategies.stain_augment.enabled = true")


def build_stain_augmentor(settings: StainAugmentSettings, device: torch.device) -> Any:
    """torch-staintools' augmentor for ``settings`` on ``device``."""
    from torch_staintools.augmentor import AugmentorBuilder  # optional dependency (the stain extra)

    return AugmentorBuilder.build(settings.method, concentration_solver=CONCENTRATION_SOLVER,
                                  sigma_alpha=settings.sigma_alpha, sigma_beta=settings.sigma_beta,
                                  luminosity_threshold=settings.luminosity_threshold, device=device)


@torch.no_grad()
def stain_augment(augmentor: Any, images: Tensor, generator: torch.Generator) -> Tensor:
    """Re-stain a float batch B x 3 x H x W in [0, 1]; same shape, dtype and device, values in [0, 1].

    The steps of torch-staintools' ``Augmentor.forward``, with its random draws from a generator seeded from
    ``generator`` (one draw), and without its catch-all that hands back the input on any error: only a batch
    with no tissue at all is returned unchanged.
    """
    from torch_staintools.augmentor import Augmentor  # optional dependency (the stain extra)
    from torch_staintools.constants import CONFIG
    from torch_staintools.functional.conversion.od import rgb2od
    from torch_staintools.functional.tissue_mask import TissueMaskException, get_tissue_mask
    from torch_staintools.functional.utility.implementation import img_from_concentration

    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    rng = torch.Generator(device=images.device).manual_seed(seed)
    x = images.float()
    with eager_staintools(), torch.autocast(x.device.type, enabled=False):
        try:
            mask = get_tissue_mask(x, augmentor.luminosity_threshold).contiguous()
        except TissueMaskException:
            return images
        od = rgb2od(x)
        augmentor.get_stain_matrix.rng = rng
        stain_matrix = augmentor.get_stain_matrix(od, mask)
        concentration = augmentor.concentration_solver(od, stain_matrix, rng=rng)
        concentration = Augmentor.augment(target_concentration=concentration, tissue_mask=mask,
                                          target_stain_idx=augmentor.target_stain_idx, inplace=False, rng=rng,
                                          sigma_alpha=augmentor.sigma_alpha, sigma_beta=augmentor.sigma_beta)
        if CONFIG.AUG_POSITIVE_CONCENTRATION:
            concentration = concentration.clamp_min(0)
        out = img_from_concentration(concentration, stain_matrix, img_shape=od.shape, out_range=(0, 1))
    bad = ~torch.isfinite(out).flatten(1).all(dim=1)
    if bad.any():  # a figure whose stains cannot be separated (no tissue) keeps its own colours
        out[bad] = x[bad]
    return out.to(images.dtype)


class StainAugment(Strategy):
    """Each training figure re-stained along its own stain vectors, before the other augmentations."""

    name = "stain_augment"
    section = "stain_augment"
    settings_type = StainAugmentSettings
    summary = "Stain-matrix augmentation (torch-staintools, Macenko/Vahadane); off by default."
    transform_order = -2  # on the figure as scanned, before augment's geometry and colour jitter

    def setup(self, model: torch.nn.Module) -> None:
        self.augmentor = build_stain_augmentor(self.settings, self.context.device) if self.settings.enabled else None

    def transform(self, batch: Batch, generator: torch.Generator) -> Batch:
        if self.augmentor is None:
            return batch  # nothing drawn: the other strategies' draws stay where they were
        batch.images = stain_augment(self.augmentor, batch.images, generator)
        return batch
