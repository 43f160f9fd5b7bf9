"""Test-time adaptation without labels: BatchNorm statistics re-estimated on the target figures (AdaBN).

A new scanner shifts colour and texture statistics; a BatchNorm network normalises with the source
domain's running means and variances, so every activation lands off-centre. AdaBN (Li et al., 2016)
replaces those running statistics with the target's own, computed in a forward pass over unlabelled
target figures; the learned weights stay as they are. ``domain`` adapts once to every figure of a
domain, ``stack`` to each group of ``stack_size`` figures as they arrive (a challenge stack of 16).
Networks without BatchNorm (ViTs use LayerNorm) are left unchanged, and :func:`has_batchnorm` says so.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from mitotype.errors import MitotypeError
from mitotype.models.device import to_float_batch

ADAPT_MODES = ("off", "domain", "stack")
"""``off``: source statistics; ``domain``: one re-estimate per domain; ``stack``: one per group of figures."""

_BATCHNORM = (torch.nn.modules.batchnorm._BatchNorm,)


def has_batchnorm(model: torch.nn.Module) -> bool:
    """Whether AdaBN can change anything in ``model``."""
    return any(isinstance(m, _BATCHNORM) for m in model.modules())


@torch.no_grad()
def adapt_batchnorm(
    model: torch.nn.Module,
    images: np.ndarray,
    idx: Sequence[int] | np.ndarray | None = None,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> torch.nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are those of ``images`` (rows ``idx``).

    The statistics are an exact cumulative average over the batches (``momentum=None``), so the result
    does not depend on the order of figures, only slightly on the batch size through the variance of
    each batch. Dropout and every other layer stay in eval mode; the original model is not touched.
    """
    if batch_size < 1:
        raise MitotypeError(f"batch size must be at least 1, got {batch_size}")
    idx = np.arange(len(images)) if idx is None else np.asarray(idx)
    if len(idx) == 0:
        raise MitotypeError("AdaBN needs at least one target figure")
    adapted = copy.deepcopy(model).to(device).eval()
    norms = [m for m in adapted.modules() if isinstance(m, _BATCHNORM) and m.track_running_stats]
    if not norms:
        return adapted
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: every batch counts equally
        norm.train()
    for start in range(0, len(idx), batch_size):
        adapted(to_float_batch(images, idx[start : start + batch_size], torch.device(device)))
    for norm in norms:
        norm.eval()
    return adapted


def class_balanced_rows(
    p_atypical: Sequence[float] | np.ndarray, share: float = 0.5, size: int | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Row indices (with repeats) of figures re-weighted so that, by their calibrated ``p_atypical``, a
    ``share`` of them is expected to be atypical, whatever the input's own share.

    AdaBN statistics follow the input's class mix: atypical figures look different, so an input with fewer of
    them moves every BatchNorm mean and every score. Re-estimating on this re-weighted sample instead keeps the
    class mix the network's statistics had while it trained (class-balanced sampling: half atypical) and leaves
    the scanner's own shift to be corrected. Figure i weighs ``share * p_i / m + (1 - share) * (1 - p_i) / (1 - m)``
    with ``m`` the mean p: the expected atypical share of the weighted sample is then exactly ``share``.
    """
    p = np.clip(np.asarray(p_atypical, dtype=np.float64), 1e-4, 1.0 - 1e-4)
    if p.ndim != 1 or len(p) == 0:
        raise MitotypeError("class-balanced AdaBN needs the p(atypical) of at least one figure")
    if not 0.0 < share < 1.0:
        raise MitotypeError(f"share must lie strictly between 0 and 1, got {share}")
    mean = float(p.mean())
    weights = share * p / mean + (1.0 - share) * (1.0 - p) / (1.0 - mean)
    rng = rng if rng is not None else np.random.default_rng(0)
    return rng.choice(len(p), size=len(p) if size is None else size, replace=True, p=weights / weights.sum())


__all__ = ["ADAPT_MODES", "adapt_batchnorm", "class_balanced_rows", "has_batchnorm"]
