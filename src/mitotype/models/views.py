"""The 8 dihedral views of a figure: free label-preserving views for training and for test-time augmentation.

Mitotic figures have no canonical orientation, so flips and quarter turns change nothing a pathologist
would call. They live in ``models`` because prediction (batched TTA) needs them as much as training does.
"""

from __future__ import annotations

import torch
from torch import Tensor


def dihedral(x: Tensor, k: int) -> Tensor:
    """The k-th of the 8 dihedral transforms of the last two dims: a horizontal flip when ``k >= 4``,
    then ``k % 4`` quarter turns counter-clockwise. ``k = 0`` is the identity."""
    if not 0 <= k < 8:
        raise ValueError(f"dihedral index must be in 0..7, got {k}")
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1)) if k % 4 else x


def dihedral_views(x: Tensor) -> Tensor:
    """All 8 dihedral views of a batch, view-major: ``out[v * B + i] = dihedral(x[i], v)``, shape (8B, ...).

    One forward pass over this batch followed by :func:`dihedral_mean` is batched 8-fold TTA.
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"dihedral views need square images, got {tuple(x.shape[-2:])}")
    return torch.cat([dihedral(x, k) for k in range(8)], dim=0)


def dihedral_mean(scores: Tensor, n_views: int = 8) -> Tensor:
    """Average the per-view outputs of :func:`dihedral_views` back to one per image: (n_views*B, ...) ->
    (B, ...). Pass probabilities to average probabilities (the usual choice) or logits to average logits."""
    if scores.shape[0] % n_views:
        raise ValueError(f"{scores.shape[0]} scores are not a multiple of {n_views} views")
    return scores.reshape(n_views, scores.shape[0] // n_views, *scores.shape[1:]).mean(dim=0)


__all__ = ["dihedral", "dihedral_mean", "dihedral_views"]
