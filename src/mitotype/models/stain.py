"""Stain normalisation toward a reference H&E stain, as the first step of the model's own preprocessing.

The reference (the stain matrix and the 95th-percentile stain concentrations, Macenko et al. 2009 or
Vahadane et al. 2016) is fitted once on training figures and kept as two buffers of the model, so it is
saved in ``model.safetensors`` with the trained tensors and every path that runs the model (validation,
``predict``, the challenge container, export) normalises the same way. The algorithms are torch-staintools'
(the ``stain`` extra), batched on the model's device; its ``torch.compile`` paths are bypassed (eager,
deterministic, no C++ toolchain needed). Each figure's own stain matrix is estimated from its pixels alone,
so a figure's normalised pixels do not depend on the batch it arrives in.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from mitotype.errors import ConfigError, MitotypeError
from mitotype.settings import Settings, value_range

STAIN_EXTRA_HINT = "pip install 'mitotype[stain]' (PyPI torch-staintools)"
CONCENTRATION_SOLVER = "qr"
"""torch-staintools' concentration solver: least squares by QR, per figure (``pinv`` thresholds on the whole
batch's magnitudes, so a figure's result would depend on its batch; ``ls`` is ~6x slower on a CPU)."""


def require_staintools(what: str) -> None:
    """Raise a :class:`ConfigError` naming ``what`` when torch-staintools is not installed."""
    if importlib.util.find_spec("torch_staintools") is None:
        raise ConfigError(f"{what} needs torch-staintools: {STAIN_EXTRA_HINT}")


@contextlib.contextmanager
def eager_staintools() -> Iterator[None]:
    """torch-staintools with its lazy ``torch.compile`` switched off for the duration (restored after)."""
    from torch_staintools.constants import CONFIG  # optional dependency (the stain extra)

    before = CONFIG.ENABLE_COMPILE
    CONFIG.ENABLE_COMPILE = False
    try:
        yield
    finally:
        CONFIG.ENABLE_COMPILE = before


@dataclass
class StainNormSettings(Settings):
    """Stain normalisation toward a reference fitted on the training figures (torch-staintools)."""

    where: ClassVar[str] = "model.stain_norm"
    """Where this block sits in the run configuration (named in error messages)."""

    method: Literal["none", "macenko", "vahadane"] = "none"
    """``none`` (off), ``macenko`` (stain matrix from the angular extremes of the optical densities; ~0.1 s
    per 32 figures of 128 px on a CPU core) or ``vahadane`` (sparse dictionary learning: GPU only in
    practice, minutes per batch on a CPU)."""
    fit_figures: int = field(default=256, metadata=value_range(1, 100_000))
    """Training figures the reference is fitted on (a seeded sample, pooled into one reference)."""
    luminosity_threshold: float = field(default=0.8, metadata=value_range(0.0, 1.0, lo_open=True))
    """Pixels with CIELAB lightness below this fraction count as tissue; brighter ones (background) are left
    out of the stain estimates."""

    def check(self) -> None:
        if self.method != "none":
            require_staintools(f"model.stain_norm.method = {self.method}")

    @property
    def enabled(self) -> bool:
        return self.method != "none"


def _normaliser(method: str, luminosity_threshold: float) -> Any:
    from torch_staintools.normalizer import NormalizerBuilder  # optional dependency (the stain extra)

    return NormalizerBuilder.build(method, concentration_solver=CONCENTRATION_SOLVER,
                                   luminosity_threshold=luminosity_threshold)


class StainNormalizer(nn.Module):
    """Float RGB in [0, 1], B x 3 x H x W -> the same figures re-stained with the reference stain matrix and
    concentration range. Holds the reference as buffers (``stain_matrix`` 2 x 3, rows H and E in optical
    density; ``max_concentration`` (2,)), NaN until :meth:`fit` or a saved state fills them."""

    def __init__(self, settings: StainNormSettings) -> None:
        super().__init__()
        require_staintools(f"model.stain_norm.method = {settings.method}")
        self.settings = settings
        self.register_buffer("stain_matrix", torch.full((2, 3), float("nan")))
        self.register_buffer("max_concentration", torch.full((2,), float("nan")))
        self.__dict__["_impl"] = _normaliser(settings.method, settings.luminosity_threshold)  # not a submodule

    @property
    def fitted(self) -> bool:
        return bool(torch.isfinite(self.stain_matrix).all() and torch.isfinite(self.max_concentration).all())

    @torch.no_grad()
    def fit(self, images: Tensor) -> None:
        """Fit the reference on N x 3 x H x W figures in [0, 1], pooled as one image (the stain estimates
        use the set of tissue pixels, not their layout)."""
        if images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
            raise ValueError(f"expected figures N x 3 x H x W, got {tuple(images.shape)}")
        pooled = torch.cat(list(images.float()), dim=-1)[None]  # 1 x 3 x H x (N * W)
        impl = self._impl
        with eager_staintools(), torch.autocast(pooled.device.type, enabled=False):
            impl.to(pooled.device)
            impl.fit(pooled)
        matrix, max_c = impl.stain_matrix_target[0].clone(), impl.maxC_target[0].clone()
        if not (torch.isfinite(matrix).all() and torch.isfinite(max_c).all()):
            raise MitotypeError("stain normalisation: the reference stain could not be estimated from the "
                                "training figures (too little tissue?)")
        self.stain_matrix.copy_(matrix.to(self.stain_matrix.device))
        self.max_concentration.copy_(max_c.to(self.max_concentration.device))
        impl.target_concentrations = None  # per-pixel concentrations of the pooled figures: not needed after

    def forward(self, images: Tensor) -> Tensor:
        if not self.fitted:
            raise MitotypeError("stain normalisation has no reference: fit it on training figures first "
                                "(a trained model's reference is loaded with its weights)")
        from torch_staintools.functional.tissue_mask import TissueMaskException  # optional dependency

        impl = self._impl
        impl.register_buffer("stain_matrix_target", self.stain_matrix[None].float())
        impl.register_buffer("maxC_target", self.max_concentration[None].float())
        x = images.float()
        try:
            with eager_staintools(), torch.autocast(x.device.type, enabled=False):
                out = impl.transform(x)
        except TissueMaskException:  # (almost) no tissue in the whole batch: nothing to normalise
            return images
        out = out.clone()  # transform runs in inference mode; a plain tensor can enter autograd
        bad = ~torch.isfinite(out).flatten(1).all(dim=1)
        if bad.any():  # a figure whose stains cannot be separated (no tissue) keeps its own colours
            out[bad] = x[bad]
        return out.to(images.dtype)

    def reference(self) -> dict[str, Any]:
        """The reference as plain numbers (stored in the model's metadata for people)."""
        return {"method": self.settings.method,
                "stain_matrix": [[float(v) for v in row] for row in self.stain_matrix.cpu()],
                "max_concentration": [float(v) for v in self.max_concentration.cpu()]}

    def digest(self) -> str:
        """The reference as text, for cache keys."""
        values = np.concatenate([self.stain_matrix.cpu().numpy().ravel(),
                                 self.max_concentration.cpu().numpy().ravel()])
        return f"{self.settings.method}:{values.astype(np.float32).tobytes().hex()}"


def build_stain_normalizer(settings: StainNormSettings) -> StainNormalizer | None:
    """The normaliser ``settings`` describe, or ``None`` when stain normalisation is off."""
    return StainNormalizer(settings) if settings.enabled else None


__all__ = ["STAIN_EXTRA_HINT", "StainNormSettings", "StainNormalizer", "build_stain_normalizer",
           "eager_staintools", "require_staintools"]
