"""Focal (fixed and adaptive), supervised contrastive and domain losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mitotype.errors import ConfigError
from mitotype.training.losses import (
    AdaptiveFocalLoss,
    FocalSettings,
    domain_adversarial_loss,
    focal_loss,
    supervised_contrastive_loss,
)


def _batch(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, generator=g) * 3
    hard = (torch.rand(n, generator=g) < 0.3).float()
    soft = torch.rand(n, generator=g)
    return logits, hard, soft


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("pos_weight", [1.0, 2.5])
def test_focal_gamma_zero_is_bce_exactly(reduction: str, pos_weight: float) -> None:
    logits, hard, soft = _batch()
    for targets in (hard, soft):
        expected = F.binary_cross_entropy_with_logits(
            logits, targets, pos_weight=torch.tensor(pos_weight), reduction=reduction
        )
        assert torch.equal(focal_loss(logits, targets, 0.0, pos_weight, reduction), expected)
        # a per-sample gamma tensor of zeros goes through the modulating factor and must still be exact
        zeros = torch.zeros_like(logits)
        assert torch.equal(focal_loss(logits, targets, zeros, pos_weight, reduction), expected)


def test_focal_hard_targets_match_lin_et_al() -> None:
    logits, hard, _ = _batch()
    gamma, pw = 2.0, 3.0
    p = torch.sigmoid(logits.double())
    expected = -(pw * hard * (1 - p) ** gamma * torch.log(p) + (1 - hard) * p**gamma * torch.log(1 - p))
    got = focal_loss(logits.double(), hard.double(), gamma, pw, reduction="none")
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_focal_soft_target_optimum_is_the_target() -> None:
    grid = torch.linspace(-6, 6, 12001, dtype=torch.float64)
    for t in (0.2, 0.5, 0.8):
        loss = focal_loss(grid, torch.full_like(grid, t), 2.0, reduction="none")
        best_p = float(torch.sigmoid(grid[loss.argmin()]))
        assert abs(best_p - t) < 2e-3


def test_focal_per_sample_gamma_equals_scalar_per_sample() -> None:
    logits, _, soft = _batch(8)
    gammas = torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 0.25, 1.5])
    got = focal_loss(logits, soft, gammas, pos_weight=2.0, reduction="none")
    for i in range(8):
        one = focal_loss(logits[i : i + 1], soft[i : i + 1], float(gammas[i]), 2.0, reduction="none")
        torch.testing.assert_close(got[i : i + 1], one)


def test_focal_gradient_finite_at_the_target_with_small_gamma() -> None:
    logits = torch.zeros(4, requires_grad=True)
    focal_loss(logits, torch.full((4,), 0.5), 0.5).backward()
    assert torch.isfinite(logits.grad).all()


def _wrong_on_atypicals(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Atypicals scored p=0.2 (missed), normals scored p=0.1 (right)."""
    targets = torch.tensor([1.0, 0.0] * (n // 2))
    p = torch.where(targets > 0.5, torch.tensor(0.2), torch.tensor(0.1))
    return torch.logit(p), targets


def test_adaptive_gamma_rises_for_the_class_with_higher_error() -> None:
    loss = AdaptiveFocalLoss(FocalSettings(gamma=2.0, gamma_min=0.5, gamma_max=4.0, momentum=0.5))
    start = loss.gammas.clone()
    torch.testing.assert_close(start, torch.tensor([2.0, 2.0]))
    logits, targets = _wrong_on_atypicals()
    for _ in range(30):
        loss.update(logits, targets)
    normal, atypical = loss.gammas.tolist()
    assert atypical > start[1] and normal < start[0]
    # EMA converges to the error rates: atypical 0.8 -> capped at gamma_max, normal 0.1 -> 0.5 + 3.5 * 0.2
    assert atypical == pytest.approx(4.0, abs=1e-6)
    assert normal == pytest.approx(0.5 + 3.5 * 0.2, abs=1e-4)
    # once the atypicals are right too, their gamma comes back down
    for _ in range(30):
        loss.update(torch.logit(torch.where(targets > 0.5, 0.9, 0.1)), targets)
    assert loss.gammas[1] == pytest.approx(0.5 + 3.5 * 0.2, abs=1e-4)
    assert int(loss.num_updates) == 60


def test_adaptive_forward_uses_interpolated_class_gammas() -> None:
    loss = AdaptiveFocalLoss(FocalSettings(gamma=1.0, gamma_min=0.0, gamma_max=4.0, pos_weight=2.0))
    loss.update(*_wrong_on_atypicals())
    g_norm, g_aty = loss.gammas.tolist()
    logits, _, soft = _batch(16)
    expected = focal_loss(logits, soft, soft * g_aty + (1 - soft) * g_norm, pos_weight=2.0)
    torch.testing.assert_close(loss(logits, soft), expected)


def test_adaptive_off_is_plain_focal() -> None:
    loss = AdaptiveFocalLoss(FocalSettings(gamma=2.0, adaptive=False, pos_weight=1.5))
    logits, hard, soft = _batch()
    loss.update(*_wrong_on_atypicals())
    torch.testing.assert_close(loss.gammas, torch.tensor([2.0, 2.0]))
    for targets in (hard, soft):
        torch.testing.assert_close(loss(logits, targets), focal_loss(logits, targets, 2.0, 1.5))


def test_adaptive_state_resumes_exactly() -> None:
    settings = FocalSettings(gamma=2.0, momentum=0.9, pos_weight="auto")
    a = AdaptiveFocalLoss(settings, class_counts=(80, 20))
    batches = [_batch(32, seed) for seed in range(6)]
    for logits, hard, _ in batches[:3]:
        a.update(logits, hard)
    b = AdaptiveFocalLoss(settings, positive_fraction=0.5)  # pos_weight comes from the state
    b.load_state_dict(a.state_dict())
    for logits, _, soft in batches[3:]:
        a.update(logits, soft)
        b.update(logits, soft)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    logits, _, soft = batches[0]
    assert torch.equal(a(logits, soft), b(logits, soft))
    assert float(a.pos_weight) == pytest.approx(4.0)


def test_update_from_stats_skips_absent_class() -> None:
    loss = AdaptiveFocalLoss(FocalSettings(momentum=0.5))
    before = loss.error_ema.clone()
    loss.update(torch.zeros(4), torch.ones(4))  # atypicals only, p = 0.5 -> error 0.5
    assert loss.error_ema[0] == before[0]
    assert float(loss.error_ema[1]) == pytest.approx(0.5 * float(before[1]) + 0.25)


def test_pos_weight_auto_and_validation() -> None:
    assert FocalSettings(pos_weight="auto").resolve_pos_weight(0.2) == pytest.approx(4.0)
    assert FocalSettings(pos_weight="auto").resolve_pos_weight(class_counts=(75, 25)) == pytest.approx(3.0)
    assert FocalSettings(pos_weight=2.0).resolve_pos_weight() == 2.0
    with pytest.raises(ConfigError):
        AdaptiveFocalLoss(FocalSettings(pos_weight="auto"))
    with pytest.raises(ConfigError):
        FocalSettings(pos_weight="auto").resolve_pos_weight(0.0)
    with pytest.raises(ConfigError):
        FocalSettings(gamma=5.0, gamma_max=4.0)
    with pytest.raises(ConfigError):
        FocalSettings(momentum=1.0)
    with pytest.raises(ConfigError):
        FocalSettings(pos_weight=-1.0)


# -- supervised contrastive: a 4-sample example worked out by hand ------------------------------------
# Features (normalised): z1 = (1, 0), z2 = (0, 1), z3 = (1, 1)/sqrt2, z4 = (0, -1); temperature 0.5, so
# s_ij = 2 cos_ij: s12 = 0, s13 = sqrt2, s14 = 0, s23 = sqrt2, s24 = -2, s34 = -sqrt2.
FEATURES = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
R2 = math.sqrt(2.0)
LOG_D = [  # log of each anchor's denominator sum_{k != i} exp(s_ik)
    math.log(1 + math.exp(R2) + 1),
    math.log(1 + math.exp(R2) + math.exp(-2)),
    math.log(math.exp(R2) + math.exp(R2) + math.exp(-R2)),
    math.log(1 + math.exp(-2) + math.exp(-R2)),
]


def test_supcon_hand_computed_hard_labels() -> None:
    # labels 1, 1, 0, 0: positives are 1<->2 and 3<->4; L_i = log D_i - s_(i, positive)
    expected = (LOG_D[0] - 0.0 + LOG_D[1] - 0.0 + LOG_D[2] + R2 + LOG_D[3] + R2) / 4
    got = supervised_contrastive_loss(FEATURES, torch.tensor([1.0, 1.0, 0.0, 0.0]), temperature=0.5)
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_supcon_hand_computed_soft_labels() -> None:
    # t = 1, 1, 0, 0.5: w12 = 1, w14 = 0.5, w24 = 0.5, w34 = 0.5, w13 = w23 = 0
    l1 = -(1.0 * (0 - LOG_D[0]) + 0.5 * (0 - LOG_D[0])) / 1.5
    l2 = -(1.0 * (0 - LOG_D[1]) + 0.5 * (-2 - LOG_D[1])) / 1.5
    l3 = -(0.5 * (-R2 - LOG_D[2])) / 0.5
    l4 = -(0.5 * (0 - LOG_D[3]) + 0.5 * (-2 - LOG_D[3]) + 0.5 * (-R2 - LOG_D[3])) / 1.5
    got = supervised_contrastive_loss(FEATURES, torch.tensor([1.0, 1.0, 0.0, 0.5]), temperature=0.5)
    assert float(got) == pytest.approx((l1 + l2 + l3 + l4) / 4, rel=1e-12)


def test_supcon_anchor_without_positive_contributes_nothing() -> None:
    # labels 1, 0, 0, 0: anchor 1 has no positive and is left out of the mean
    l2 = LOG_D[1] - (R2 + -2) / 2
    l3 = LOG_D[2] - (R2 + -R2) / 2
    l4 = LOG_D[3] - (-2 + -R2) / 2
    got = supervised_contrastive_loss(FEATURES, torch.tensor([1.0, 0.0, 0.0, 0.0]), temperature=0.5)
    assert float(got) == pytest.approx((l2 + l3 + l4) / 3, rel=1e-12)


def test_supcon_no_positives_at_all_is_zero_with_gradient() -> None:
    feats = FEATURES[:2].clone().requires_grad_(True)
    loss = supervised_contrastive_loss(feats, torch.tensor([1.0, 0.0]))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.isfinite(feats.grad).all()


def test_supcon_gradients_finite_and_scale_invariant() -> None:
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(32, 16, generator=g, requires_grad=True)
    targets = torch.rand(32, generator=g)
    loss = supervised_contrastive_loss(feats, targets, 0.1)
    loss.backward()
    assert torch.isfinite(feats.grad).all()
    scaled = supervised_contrastive_loss(feats.detach() * 7.0, targets, 0.1)
    torch.testing.assert_close(scaled, loss.detach())


def test_domain_adversarial_loss_ignores_masked_samples() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 3, generator=g, requires_grad=True)
    domains = torch.tensor([0, 2, -1, 1, -1, 2])
    keep = domains != -1
    expected = F.cross_entropy(logits[keep], domains[keep])
    torch.testing.assert_close(domain_adversarial_loss(logits, domains), expected)
    none_left = domain_adversarial_loss(logits, torch.full((6,), -1))
    assert float(none_left.detach()) == 0.0
    none_left.backward()
    assert torch.isfinite(logits.grad).all()
