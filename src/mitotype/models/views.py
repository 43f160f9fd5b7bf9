"""The 8 dihedral views of a figure: free label-preserving views for training and for test-time augmentation.

Mitotic figures have no canonical orientation, so flips and quarter turns change nothing a pathologist
would call. They live in ``models`` because prediction (batched TTA) needs them as much as training does.
The same views exist twice, in the same order: on torch tensors (training, the PyTorch path) and on numpy
arrays (the ONNX Runtime path, which never imports torch); a test holds the two together. torch is imported
by the functions that use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor


def dihedral(x: Tensor, k: int) -> Tensor:
    """The k-th of the 8 dihedral transforms of the last two dims: a horizontal flip when ``k >= 4``,
    then ``k % 4`` quarter turns counter-clockwise. ``k = 0`` is the identity."""
    import torch

    if not 0 <= k < 8:
        raise ValueError(f"dihedral index must be in 0..7, got {k}")
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1)) if k % 4 else x


def dihedral_views(x: Tensor) -> Tensor:
    """All 8 dihedral views of a batch, view-major: ``out[v * B + i] = dihedral(x[i], v)``, shape (8B, ...).

    One forward pass over this batch followed by :func:`dihedral_mean` is batched 8-fold TTA.
    """
    import torch

    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"dihedral views need square images, got {tuple(x.shape[-2:])}")
    return torch.cat([dihedral(x, k) for k in range(8)], dim=0)


def dihedral_mean(scores: Tensor, n_views: int = 8) -> Tensor:
    """Average the per-view outputs of :func:`dihedral_views` back to one per image: (n_views*B, ...) ->
    (B, ...). Pass probabilities to average probabilities (the usual choice) or logits to average logits."""
    if scores.shape[0] % n_views:
        raise ValueError(f"{scores.shape[0]} scores are not a multiple of {n_views} views")
    return scores.reshape(n_views, scores.shape[0] // n_views, *scores.shape[1:]).mean(dim=0)


def dihedral_np(x: np.ndarray, k: int) -> np.ndarray:
    """:func:`dihedral` on a numpy array: the same transform of the last two dims (a horizontal flip of the
    last dim when ``k >= 4``, then ``k % 4`` counter-clockwise quarter turns), as a view where it can be."""
    if not 0 <= k < 8:
        raise ValueError(f"dihedral index must be in 0..7, got {k}")
    if k >= 4:
        x = x[..., ::-1]
    return np.rot90(x, k % 4, axes=(-2, -1)) if k % 4 else x


def dihedral_views_np(x: np.ndarray) -> np.ndarray:
    """:func:`dihedral_views` on a numpy batch (B x C x H x W): the 8 views, view-major, contiguous (8B, ...)."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"dihedral views need square images, got {tuple(x.shape[-2:])}")
    return np.concatenate([dihedral_np(x, k) for k in range(8)], axis=0)


def dihedral_mean_np(scores: np.ndarray, n_views: int = 8) -> np.ndarray:
    """:func:`dihedral_mean` on a numpy array: (n_views*B, ...) -> (B, ...), averaged over the views."""
    if scores.shape[0] % n_views:
        raise ValueError(f"{scores.shape[0]} scores are not a multiple of {n_views} views")
    return scores.reshape(n_views, scores.shape[0] // n_views, *scores.shape[1:]).mean(axis=0)


__all__ = ["dihedral", "dihedral_mean", "dihedral_mean_np", "dihedral_np", "dihedral_views", "dihedral_views_np"]
