"""Each consumer of randomness in a training run reads its own stream (training/seeds.py)."""

from __future__ import annotations

import numpy as np
import torch

from mitotype.training.seeds import Stream, augmentation_seed, bn_views_seed, dropout_seed, stream


def _draws(seed: int, n: int = 64) -> torch.Tensor:
    return torch.rand(n, generator=torch.Generator().manual_seed(seed))


def test_dropout_and_augmentation_of_an_epoch_draw_different_numbers() -> None:
    for seed in (0, 1, 7):
        for epoch in (0, 1, 5):
            dropout, augmentation = dropout_seed(seed, epoch), augmentation_seed(seed, epoch)
            assert dropout != augmentation
            assert not torch.equal(_draws(dropout), _draws(augmentation))
            # uncorrelated, not merely shifted: the two streams' numbers do not follow each other
            r = np.corrcoef(_draws(dropout, 4096).numpy(), _draws(augmentation, 4096).numpy())[0, 1]
            assert abs(r) < 0.1


def test_streams_depend_on_seed_and_epoch_alone() -> None:
    """A resumed run draws what an uninterrupted one does: the same (seed, epoch) gives the same stream."""
    assert dropout_seed(3, 2) == dropout_seed(3, 2)
    seeds = {dropout_seed(s, e) for s in range(3) for e in range(4)}
    assert len(seeds) == 12
    assert min(seeds) >= 0 and max(seeds) < 2**63
    first = np.random.default_rng(stream(3, Stream.BN_UPDATE_FIGURES)).permutation(100)
    again = np.random.default_rng(stream(3, Stream.BN_UPDATE_FIGURES)).permutation(100)
    assert np.array_equal(first, again)


def test_the_batchnorm_sample_is_not_the_stain_references() -> None:
    """Both pick figures from the training set; they used to take the same permutation of the one seed."""
    train_idx = np.arange(500)
    stain_reference = np.random.default_rng(0).permutation(train_idx)[:64]
    bn_update = np.random.default_rng(stream(0, Stream.BN_UPDATE_FIGURES)).permutation(train_idx)[:64]
    assert len(set(stain_reference) & set(bn_update)) < 32


def test_the_recorded_streams_keep_their_seeds() -> None:
    """Runs recorded before the streams were split reproduce where they used no dropout: augmentation and the
    BatchNorm re-estimation's views keep their seeds."""
    assert augmentation_seed(2, 5) == 2 * 1_000_003 + 5
    assert bn_views_seed(2) == 2 * 1_000_003 + 7_919
