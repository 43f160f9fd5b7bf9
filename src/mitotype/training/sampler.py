"""Domain-aware, class-balanced, hardness-weighted sampling of training figures.

:func:`domain_aware_weights` turns labels, domains and (optionally) difficulty into per-sample draw
probabilities; :class:`EpochSampler` / :class:`DistributedEpochSampler` draw an epoch from them with
replacement, deterministically by ``(seed, epoch)``.

The weights imply these targets (see :func:`sampling_targets`), for domain d of size ``n_d`` holding
``K_d`` classes, ``n_dc`` of them of class c:

- domain mass ``M_d = n_d ** (1 - domain_power) / sum_e n_e ** (1 - domain_power)``;
- class share within d ``m_dc = (1 - class_balance) * n_dc / n_d + class_balance / K_d``;
- cell mass ``P(d, c) = M_d * m_dc``, so ``P(c) = sum_d M_d m_dc``;
- within a cell, sample i gets ``P(d, c) * (1 + hard_weight * difficulty_i) / sum_cell(...)``: a fully
  hard figure is drawn ``1 + hard_weight`` times as often as an easy one of the same domain and class,
  while the domain and class masses stay exactly as above whatever the difficulties are.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Sampler

from mitotype.settings import Settings, value_range


@dataclass
class SamplingSettings(Settings):
    """How an epoch's figures are drawn from the training set."""

    enabled: bool = True
    """Domain-aware sampling at all; off = the natural class and domain mix (every figure equally likely,
    up to the hard-example weight when hard mining is on)."""
    class_balance: float = field(default=1.0, metadata=value_range(0, 1))
    """Class balancing within each domain: 0 keeps the domain's natural class mix, 1 draws every class
    present in the domain equally often, in between interpolates linearly."""
    domain_power: float = field(default=0.5, metadata=value_range(0, 1))
    """Domain equalisation: a domain's share of draws is proportional to size ** (1 - domain_power);
    0 = by size (natural), 1 = every domain equally, 0.5 = square-root damping."""
    hard_weight: float = field(default=1.0, metadata=value_range(0, None))
    """Extra draw weight of hard figures: difficulty 1 is drawn (1 + hard_weight)x as often as
    difficulty 0 within the same domain and class (0 disables; without hard mining every difficulty is 0
    and this has no effect)."""


@dataclass
class SamplingTargets:
    """The draw frequencies :func:`domain_aware_weights` implies."""

    domain: dict[Hashable, float]
    """Probability that a draw comes from each domain."""
    label: dict[int, float]
    """Probability that a draw has each label (``label[1]`` is the atypical fraction the loss sees)."""
    cell: dict[tuple[Hashable, int], float]
    """Probability of each (domain, label) cell present in the data."""


def _as_arrays(
    labels: Sequence[int] | np.ndarray, domains: Sequence[Hashable] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lab = np.asarray(labels)
    dom = np.asarray(domains)
    if lab.ndim != 1 or dom.shape != lab.shape:
        raise ValueError(f"labels {lab.shape} and domains {dom.shape} must be 1-D of the same length")
    if lab.size == 0:
        raise ValueError("cannot sample from an empty training set")
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.all(lab == np.round(lab)):
            raise ValueError("labels must be hard integer labels (use the soft labels for the loss)")
        lab = lab.astype(np.int64)
    dom_names, dom_idx = np.unique(dom, return_inverse=True)
    lab_names, lab_idx = np.unique(lab, return_inverse=True)
    return dom_names, dom_idx.reshape(-1), lab_names, lab_idx.reshape(-1), lab


def _cell_masses(dom_idx: np.ndarray, lab_idx: np.ndarray, n_dom: int, n_lab: int, s: SamplingSettings):
    counts = np.zeros((n_dom, n_lab), dtype=np.float64)
    np.add.at(counts, (dom_idx, lab_idx), 1.0)
    n_d = counts.sum(axis=1)
    dom_mass = n_d ** (1.0 - s.domain_power)
    dom_mass /= dom_mass.sum()
    k_d = (counts > 0).sum(axis=1)
    share = (1.0 - s.class_balance) * counts / n_d[:, None] + s.class_balance * (counts > 0) / k_d[:, None]
    return counts, dom_mass[:, None] * share


def sampling_targets(
    labels: Sequence[int] | np.ndarray,
    domains: Sequence[Hashable] | np.ndarray,
    settings: SamplingSettings | None = None,
) -> SamplingTargets:
    """Domain, label and cell draw probabilities implied by ``settings`` (independent of difficulty)."""
    s = settings or SamplingSettings()
    dom_names, dom_idx, lab_names, lab_idx, _ = _as_arrays(labels, domains)
    if not s.enabled:
        s = SamplingSettings(class_balance=0.0, domain_power=0.0)
    counts, cell = _cell_masses(dom_idx, lab_idx, len(dom_names), len(lab_names), s)
    return SamplingTargets(
        domain={_py(d): float(m) for d, m in zip(dom_names, cell.sum(axis=1))},
        label={int(c): float(m) for c, m in zip(lab_names, cell.sum(axis=0))},
        cell={
            (_py(dom_names[i]), int(lab_names[j])): float(cell[i, j])
            for i, j in zip(*np.nonzero(counts))
        },
    )


def _py(value: object) -> Hashable:
    """numpy scalars as plain Python values, so dict keys match the caller's ``str``/``int``."""
    return value.item() if isinstance(value, np.generic) else value  # type: ignore[return-value]


def domain_aware_weights(
    labels: Sequence[int] | np.ndarray,
    domains: Sequence[Hashable] | np.ndarray,
    difficulty: Sequence[float] | np.ndarray | None = None,
    settings: SamplingSettings | None = None,
) -> np.ndarray:
    """Per-sample draw probabilities (float64, summing to 1) realising the module-level targets.

    ``labels`` are hard labels, ``domains`` any hashable names, ``difficulty`` values in [0, 1] (e.g.
    from :class:`~mitotype.training.strategies.hard_mining.HardExampleMiner`; ``None`` = all easy).
    """
    s = settings or SamplingSettings()
    dom_names, dom_idx, lab_names, lab_idx, _ = _as_arrays(labels, domains)
    n = dom_idx.size
    if difficulty is None:
        hard = np.zeros(n, dtype=np.float64)
    else:
        hard = np.asarray(difficulty, dtype=np.float64)
        if hard.shape != (n,):
            raise ValueError(f"difficulty has shape {hard.shape}, expected ({n},)")
        if not np.all((hard >= 0) & (hard <= 1)):
            raise ValueError("difficulty must lie in [0, 1] (and not be NaN)")
    if not s.enabled:  # the natural class and domain mix; hard mining still re-weights figures
        raw = 1.0 + s.hard_weight * hard
        return raw / raw.sum()
    _, cell = _cell_masses(dom_idx, lab_idx, len(dom_names), len(lab_names), s)
    raw = 1.0 + s.hard_weight * hard
    cell_raw = np.zeros_like(cell)
    np.add.at(cell_raw, (dom_idx, lab_idx), raw)
    weights = cell[dom_idx, lab_idx] * raw / cell_raw[dom_idx, lab_idx]
    return weights / weights.sum()


def _epoch_seed(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)]))


def _check_weights(weights: Sequence[float] | np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights must be a non-empty 1-D array, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return w / w.sum()


class EpochSampler(Sampler[int]):
    """Draws ``num_samples`` indices with replacement from ``weights``; the same ``(seed, epoch)`` always
    gives the same draw. Call :meth:`set_epoch` before each epoch and :meth:`set_weights` when the
    difficulties change."""

    def __init__(self, weights: Sequence[float] | np.ndarray, num_samples: int | None = None, seed: int = 0):
        self.weights = _check_weights(weights)
        self.num_samples = int(num_samples) if num_samples is not None else self.weights.size
        if self.num_samples <= 0:
            raise ValueError(f"num_samples must be > 0, got {self.num_samples}")
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_weights(self, weights: Sequence[float] | np.ndarray) -> None:
        w = _check_weights(weights)
        if w.size != self.weights.size:
            raise ValueError(f"new weights have {w.size} entries, the sampler has {self.weights.size}")
        self.weights = w

    def global_indices(self) -> np.ndarray:
        """This epoch's full draw (int64), identical in every process."""
        rng = _epoch_seed(self.seed, self.epoch)
        return rng.choice(self.weights.size, size=self.num_samples, replace=True, p=self.weights)

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_indices().tolist())

    def __len__(self) -> int:
        return self.num_samples


class DistributedEpochSampler(EpochSampler):
    """The :class:`EpochSampler` draw split across processes.

    Every rank computes the same global draw of ``num_samples``; it is padded by repeating its start to a
    multiple of ``num_replicas`` and rank r takes positions ``r, r + num_replicas, ...``. Interleaving the
    shards therefore gives back the single-process draw (plus the padding at the end).
    """

    def __init__(
        self,
        weights: Sequence[float] | np.ndarray,
        num_samples: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
    ):
        super().__init__(weights, num_samples, seed)
        dist_on = torch.distributed.is_available() and torch.distributed.is_initialized()
        if num_replicas is None:
            num_replicas = torch.distributed.get_world_size() if dist_on else 1
        if rank is None:
            rank = torch.distributed.get_rank() if dist_on else 0
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}")
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.per_rank = math.ceil(self.num_samples / self.num_replicas)

    def shard_indices(self) -> np.ndarray:
        """This rank's share of the epoch's draw (length ``ceil(num_samples / num_replicas)``)."""
        draw = self.global_indices()
        total = self.per_rank * self.num_replicas
        padded = np.resize(draw, total)  # repeats the draw from its start
        return padded[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard_indices().tolist())

    def __len__(self) -> int:
        return self.per_rank
