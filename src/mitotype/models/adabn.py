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


__all__ = ["ADAPT_MODES", "adapt_batchnorm", "has_batchnorm"]
