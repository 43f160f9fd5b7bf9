"""Losses for atypical-vs-normal training: focal (fixed and adaptive), supervised contrastive, domain.

All targets are floats in [0, 1] (1 = atypical): vote fractions, hard labels or MixUp mixtures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mitotype.errors import ConfigError
from mitotype.settings import Settings, value_range

Reduction = Literal["mean", "sum", "none"]

_ERR_FLOOR = 1e-6
"""|t - p| is floored here inside the focal factor so its gradient stays finite for 0 < gamma < 1."""


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    gamma: float | Tensor,
    pos_weight: float | Tensor = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """Binary focal loss on soft targets with the atypical term weighted by ``pos_weight``.

    ``loss_i = |t_i - p_i| ** gamma_i * BCE_pw(logits_i, t_i)`` with ``p = sigmoid(logits)`` and
    ``BCE_pw = -(pos_weight * t * log p + (1 - t) * log(1 - p))``.

    For hard targets ``|t - p|`` is ``1 - p_t``, so this is exactly Lin et al.'s focal loss. For soft
    targets (vote fractions, MixUp) it is the "quality focal loss" form (Li et al., 2020): the loss is
    zero at ``p = t``, so the optimum stays at the soft target instead of being pulled toward 0.5 as it
    is when each term carries its own ``(1 - p)**gamma`` / ``p**gamma`` factor. With ``gamma = 0`` the
    factor is exactly 1 and the result is ``F.binary_cross_entropy_with_logits(..., pos_weight=...)``.

    ``gamma`` is a number or a tensor broadcastable to ``logits`` (one gamma per sample).
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    targets = targets.to(logits.dtype)
    pw = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pw, reduction="none")
    if isinstance(gamma, Tensor):
        gamma = gamma.to(device=logits.device, dtype=logits.dtype)
    elif gamma == 0:
        return _reduce(bce, reduction)
    err = (targets - torch.sigmoid(logits)).abs().clamp_min(_ERR_FLOOR)
    return _reduce(err.pow(gamma) * bce, reduction)


@dataclass
class FocalSettings(Settings):
    """How the classification loss focuses on hard figures and weights the atypical class."""

    gamma: float = 2.0
    """Focusing strength; 0 is plain (weighted) BCE. With ``adaptive`` on it is the starting gamma of
    both classes and must lie in [``gamma_min``, ``gamma_max``]."""
    adaptive: bool = True
    """Adapt one gamma per class from an EMA of that class's error (see :class:`AdaptiveFocalLoss`)."""
    gamma_min: float = 0.5
    """Gamma of a class the model no longer gets wrong (EMA error 0)."""
    gamma_max: float = 4.0
    """Gamma of a class the model gets wrong at chance level (EMA error >= 0.5)."""
    momentum: float = field(default=0.9, metadata=value_range(0, 1, hi_open=True))
    """EMA momentum of the per-class error: ``e = momentum * e + (1 - momentum) * batch_error``."""
    pos_weight: float | Literal["auto"] = 1.0
    """Weight of the atypical term: a number, or ``"auto"`` = (1 - f) / f with f the fraction of
    atypical targets the loss sees, i.e. after the sampler's class balancing (the default sampler already
    balances classes, hence 1.0)."""

    def check(self) -> None:
        if self.gamma < 0 or self.gamma_min < 0 or self.gamma_max < self.gamma_min:
            raise ConfigError(
                f"focal: need 0 <= gamma_min <= gamma_max and gamma >= 0, got gamma={self.gamma}, "
                f"gamma_min={self.gamma_min}, gamma_max={self.gamma_max}"
            )
        if self.adaptive and not self.gamma_min <= self.gamma <= self.gamma_max:
            raise ConfigError(
                f"focal: adaptive gamma={self.gamma} must lie in [gamma_min={self.gamma_min}, "
                f"gamma_max={self.gamma_max}]"
            )
        if self.pos_weight != "auto" and (
            isinstance(self.pos_weight, str) or not float(self.pos_weight) > 0
        ):
            raise ConfigError(f"focal: pos_weight must be 'auto' or a number > 0, got {self.pos_weight!r}")

    def resolve_pos_weight(
        self, positive_fraction: float | None = None, class_counts: Sequence[float] | None = None
    ) -> float:
        """The numeric pos_weight; ``"auto"`` needs the atypical fraction the loss will see, given directly
        or as ``(normal, atypical)`` counts (e.g. ``sampling_targets(...).label`` masses)."""
        if self.pos_weight != "auto":
            return float(self.pos_weight)
        if positive_fraction is None and class_counts is not None:
            n_neg, n_pos = (float(c) for c in class_counts)
            positive_fraction = n_pos / (n_neg + n_pos) if n_neg + n_pos > 0 else None
        if positive_fraction is None:
            raise ConfigError("focal: pos_weight 'auto' needs the fraction of atypical training targets")
        if not 0 < positive_fraction < 1:
            raise ConfigError(
                f"focal: pos_weight 'auto' needs both classes in training, atypical fraction is "
                f"{positive_fraction}"
            )
        return (1.0 - positive_fraction) / positive_fraction


class AdaptiveFocalLoss(nn.Module):
    """Focal loss with one gamma per class, adapted from that class's running error.

    Rule: each class c keeps an EMA ``e_c`` of its expected error ``|t - p|`` (the probability that a
    Bernoulli(p) call is wrong), with atypical membership weighted by ``t`` and normal by ``1 - t`` so
    soft and mixed targets count fractionally. Its gamma is
    ``gamma_c = gamma_min + (gamma_max - gamma_min) * min(1, 2 * e_c)`` (chance-level error gets
    ``gamma_max``); a sample's gamma is ``t * gamma_atypical + (1 - t) * gamma_normal``.

    Why: while a class is still being missed, a larger gamma moves that class's gradient from the many
    figures it already gets right (typical-looking normals, obvious atypicals) to the ones it misses,
    which is where the minority class's errors live. As the class's error falls, gamma falls back toward
    ``gamma_min`` and the loss moves toward weighted BCE (gamma 0), whose probabilities are better
    calibrated (the decision threshold and fold ensembles use them). The EMA starts at the error that
    gives ``gamma``, so before the first :meth:`update` both classes use ``gamma``. With ``adaptive`` off
    the gammas stay at ``gamma`` and this is plain focal loss.

    The state (``error_ema``, ``num_updates``, ``pos_weight``) lives in buffers, so ``state_dict`` /
    ``load_state_dict`` resume it exactly. Call :meth:`update` once per optimisation step with the
    batch's (detached) logits; under DDP all-reduce :meth:`batch_stats` and call
    :meth:`update_from_stats` so every rank keeps the same gammas.
    """

    error_ema: Tensor
    num_updates: Tensor
    pos_weight: Tensor

    def __init__(
        self,
        settings: FocalSettings | None = None,
        positive_fraction: float | None = None,
        class_counts: Sequence[float] | None = None,
    ):
        super().__init__()
        self.settings = settings or FocalSettings()
        s = self.settings
        span = s.gamma_max - s.gamma_min
        start = 0.5 * (s.gamma - s.gamma_min) / span if span > 0 else 0.0
        self.register_buffer("error_ema", torch.full((2,), start, dtype=torch.float32))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))
        self.register_buffer(
            "pos_weight",
            torch.tensor(s.resolve_pos_weight(positive_fraction, class_counts), dtype=torch.float32),
        )

    @property
    def gammas(self) -> Tensor:
        """Current gamma per class, ``[normal, atypical]``."""
        s = self.settings
        if not s.adaptive:
            return torch.full((2,), s.gamma, dtype=self.error_ema.dtype, device=self.error_ema.device)
        frac = (2.0 * self.error_ema).clamp(0.0, 1.0)
        return s.gamma_min + (s.gamma_max - s.gamma_min) * frac

    def sample_gamma(self, targets: Tensor) -> Tensor:
        """Per-sample gamma: the class gammas interpolated by the (soft) target."""
        g = self.gammas.to(targets.device)
        t = targets.to(g.dtype)
        return t * g[1] + (1.0 - t) * g[0]

    def forward(self, logits: Tensor, targets: Tensor, reduction: Reduction = "mean") -> Tensor:
        gamma = self.sample_gamma(targets).to(logits.dtype)
        return focal_loss(logits, targets, gamma, pos_weight=self.pos_weight, reduction=reduction)

    @staticmethod
    @torch.no_grad()
    def batch_stats(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Per-class ``(error_sum, weight_sum)``, each ``[normal, atypical]``, for
        :meth:`update_from_stats`."""
        t = targets.detach().float().reshape(-1)
        err = (t - torch.sigmoid(logits.detach().float().reshape(-1))).abs()
        member = torch.stack([1.0 - t, t])
        return (member * err).sum(dim=1), member.sum(dim=1)

    @torch.no_grad()
    def update_from_stats(self, error_sum: Tensor, weight_sum: Tensor) -> None:
        """EMA step for each class that had any (soft) members in the batch(es) the sums came from."""
        error_sum = error_sum.to(self.error_ema.device, torch.float32)
        weight_sum = weight_sum.to(self.error_ema.device, torch.float32)
        present = weight_sum > 0
        batch_err = error_sum / weight_sum.clamp_min(1e-12)
        m = self.settings.momentum
        new = m * self.error_ema + (1.0 - m) * batch_err
        self.error_ema.copy_(torch.where(present, new, self.error_ema))
        self.num_updates += 1

    @torch.no_grad()
    def update(self, logits: Tensor, targets: Tensor) -> None:
        """Fold one batch's errors into the per-class EMA (single process)."""
        self.update_from_stats(*self.batch_stats(logits, targets))


def supervised_contrastive_loss(features: Tensor, targets: Tensor, temperature: float = 0.1) -> Tensor:
    """Supervised contrastive loss (Khosla et al., 2020) generalised to soft targets.

    Embeddings are L2-normalised; ``s_ij = z_i . z_j / temperature``; for anchor i the log-probability of
    j is ``s_ij - log sum_{k != i} exp(s_ik)``. Pairs are weighted by target agreement
    ``w_ij = t_i t_j + (1 - t_i)(1 - t_j)`` (self-pairs excluded), which for hard labels is 1 for
    same-class pairs and 0 otherwise, i.e. SupCon's positives, and lets vote fractions and MixUp targets
    share a batch. Anchor loss ``L_i = -sum_j w_ij log p_ij / sum_j w_ij``. Anchors without any positive
    weight contribute nothing: the result is the mean of ``L_i`` over the anchors that have some (0,
    still attached to the graph, when none has).
    """
    if features.ndim != 2 or targets.shape != features.shape[:1]:
        raise ValueError(
            f"features must be (B, E) and targets (B,), "
            f"got {tuple(features.shape)} and {tuple(targets.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = features.shape[0]
    work_dtype = torch.promote_types(features.dtype, torch.float32)  # half -> float32, float64 stays
    z = F.normalize(features.to(work_dtype), dim=1)
    sim = z @ z.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=features.device)
    log_prob = sim - torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
    t = targets.to(device=features.device, dtype=work_dtype)
    w = (t[:, None] * t[None, :] + (1 - t[:, None]) * (1 - t[None, :])).masked_fill(self_mask, 0.0)
    w_sum = w.sum(dim=1)
    anchor_loss = -(w * log_prob.masked_fill(self_mask, 0.0)).sum(dim=1)
    valid = w_sum > 0
    per_anchor = torch.where(valid, anchor_loss / w_sum.clamp_min(1e-12), torch.zeros_like(anchor_loss))
    return (per_anchor.sum() / valid.sum().clamp_min(1)).to(features.dtype)


def domain_adversarial_loss(domain_logits: Tensor, domains: Tensor, ignore_index: int = -1) -> Tensor:
    """Cross-entropy of the domain head (behind a gradient-reversal layer in the model).

    Samples with ``domains == ignore_index`` (e.g. MixUp mixtures of two domains) are left out; a batch
    with none left gives 0 (attached to the graph) rather than NaN.
    """
    domains = domains.to(device=domain_logits.device, dtype=torch.long)
    total = F.cross_entropy(domain_logits, domains, ignore_index=ignore_index, reduction="sum")
    return total / (domains != ignore_index).sum().clamp_min(1)
