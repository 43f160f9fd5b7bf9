"""Domain-aware, class-balanced, hardness-biased sampling of each epoch's figures."""

from __future__ import annotations

import numpy as np

from mitotype.training.sampler import SamplingSettings, domain_aware_weights
from mitotype.training.strategies.base import Strategy


class DomainSampling(Strategy):
    """Each epoch's draw weights: classes balanced, domains evened out, hard figures favoured."""

    name = "domain_sampling"
    section = "sampling"
    settings_type = SamplingSettings
    summary = "Domain-aware, class-balanced, hardness-biased sampling."

    def sampling_weights(self) -> np.ndarray | None:
        # Off, it still returns the natural mix re-weighted by hard mining's difficulty.
        context = self.context
        idx = context.train_idx
        return domain_aware_weights(context.labels[idx], context.domains[idx], context.difficulty(), self.settings)
