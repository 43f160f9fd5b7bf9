"""The random streams of a training run: each consumer of randomness reads its own, derived from the one ``seed``.

Two consumers seeded with the same number read the same random numbers: torch's global generator (dropout) and
the augmentation generator were both seeded with ``seed * 1_000_003 + epoch``, so each epoch's dropout masks came
from the very numbers its augmentation drew; the stain reference and the BatchNorm re-estimation took their figures
from one permutation. Streams are therefore spawned from numpy's :class:`~numpy.random.SeedSequence`, one child per
purpose, and depend on ``(seed, epoch)`` alone, so a resumed run stays bit-identical to an uninterrupted one.

Kept as they were, so that recorded runs reproduce: the model's initial weights (``seed``), the augmentation
generator (:func:`augmentation_seed`), the epoch's draw of figures (its own SeedSequence of ``(seed, epoch)``,
:class:`~mitotype.training.sampler.EpochSampler`), the stain reference's sample and the augmentation of the
BatchNorm re-estimation. The one overlap left: with ``seed`` 0, the initial weights and epoch 0's augmentation
read the same numbers (each through its own transform).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """The spawned streams, by their child index (fixed: a new stream takes the next number)."""

    DROPOUT = 0
    """torch's global generator during an epoch: dropout and anything else that draws without a generator."""
    BN_UPDATE_FIGURES = 1
    """Which training figures the BatchNorm statistics of averaged weights are recomputed over."""


def stream(seed: int, which: Stream, *keys: int) -> np.random.SeedSequence:
    """The SeedSequence of stream ``which``: its child spawned from ``(seed, *keys)`` (``keys``: e.g. the epoch)."""
    return np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).spawn(len(Stream))[which]


def dropout_seed(seed: int, epoch: int) -> int:
    """The seed of torch's global generator for 0-based ``epoch``."""
    return int(stream(seed, Stream.DROPOUT, epoch).generate_state(1, np.uint64)[0] >> np.uint64(1))


def augmentation_seed(seed: int, epoch: int) -> int:
    """The seed of the generator the image strategies draw from in 0-based ``epoch`` (as recorded runs had it)."""
    return seed * 1_000_003 + epoch


BN_VIEWS_SEED_OFFSET = 7_919
"""The augmentation of the BatchNorm re-estimation: seed ``seed * 1_000_003 + 7_919`` (as recorded runs had it; an
epoch's augmentation seed only for a run of 7,919 epochs)."""


def bn_views_seed(seed: int) -> int:
    """The seed of the generator that augments the figures of the BatchNorm re-estimation."""
    return augmentation_seed(seed, BN_VIEWS_SEED_OFFSET)


__all__ = ["BN_VIEWS_SEED_OFFSET", "Stream", "augmentation_seed", "bn_views_seed", "dropout_seed", "stream"]
