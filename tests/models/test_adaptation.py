"""LoRA / full / frozen: what is adapted, what trains, saving, loading and merging adapters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file

from mitotype.errors import ConfigError, WeightsError
from mitotype.models import LoraSettings, ModelConfig, build_classifier
from mitotype.models.adaptation import ADAPTER_CONFIG, ADAPTER_WEIGHTS, lora_modules
from mitotype.models.classifier import MitoClassifier
from mitotype.models.registry import create_backbone, get_backbone_spec

LORA = LoraSettings(rank=4, alpha=8, dropout=0.0)
VIT_ADAPTED = {f"blocks.{i}.{m}" for i in (0, 1) for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")}


def _build(
    weights: Path | None, backbone: str = "tiny-vit-reg4", seed: int = 0, **kw: object
) -> MitoClassifier:
    torch.manual_seed(seed)
    kw.setdefault("lora", LORA)
    cfg = ModelConfig(backbone=backbone, weights=str(weights) if weights else None, **kw)  # type: ignore[arg-type]
    return build_classifier(cfg)


def _randomise_lora(model: torch.nn.Module, seed: int = 1) -> None:
    """LoRA B starts at zero (a no-op update); give it values so merging is actually tested."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def test_default_vit_targets_adapt_blocks_but_not_patch_embed(tiny_vit_weights: Path) -> None:
    model = _build(tiny_vit_weights)
    assert set(model.adaptation.adapted_modules) == VIT_ADAPTED
    assert set(lora_modules(model.backbone)) == VIT_ADAPTED
    assert type(model.backbone.patch_embed.proj) is torch.nn.Conv2d
    assert not any("patch_embed" in n for n, _ in model.named_parameters() if "lora_" in n)


def test_peft_list_targets_would_have_adapted_patch_embed() -> None:
    """Why the target is a regex: peft's list form suffix-matches 'proj' into patch_embed.proj."""
    backbone = create_backbone(get_backbone_spec("tiny-vit-reg4"))
    inject_adapter_in_model(LoraConfig(r=2, target_modules=["qkv", "proj", "fc1", "fc2"]), backbone)
    assert isinstance(backbone.patch_embed.proj, BaseTunerLayer)


def test_lora_forward_backward_reaches_only_adapters_and_heads(tiny_vit_weights: Path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="tiny-vit-reg4", weights=str(tiny_vit_weights), lora=LORA, head_hidden=16)
    model = build_classifier(cfg, num_domains=3)
    _randomise_lora(model)
    out = model(torch.rand(3, 3, 40, 40))
    loss = out.logits.sum() + out.projection.sum() + out.domain_logits.sum()  # type: ignore[union-attr]
    loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad, "nothing received a gradient"
    for name in with_grad:
        assert ".lora_" in name or name.startswith(("head.", "projector.", "domain_head.")), name
    assert {n for n in with_grad if ".lora_A." in n} and {n for n in with_grad if ".lora_B." in n}
    assert any(n.startswith("domain_head.") for n in with_grad)
    frozen = [n for n, p in model.named_parameters() if n.startswith("backbone.") and ".lora_" not in n]
    assert frozen and all(not model.get_parameter(n).requires_grad for n in frozen)


def test_trainable_parameter_count_is_the_lora_formula(tiny_vit_weights: Path) -> None:
    model = _build(tiny_vit_weights)
    # rank * (in + out) per adapted Linear: qkv 32->96, proj 32->32, fc1 32->170, fc2 85->32
    per_block = 4 * ((32 + 96) + (32 + 32) + (32 + 170) + (85 + 32))
    assert model.adaptation.trainable_backbone_parameters == 2 * per_block
    assert model.adaptation.backbone_parameters == 45_140
    assert "lora: 4,088 trainable backbone parameters" in model.adaptation.describe()


def test_merged_and_unmerged_outputs_agree(tiny_vit_weights: Path) -> None:
    model = _build(tiny_vit_weights).eval()
    _randomise_lora(model)
    x = torch.rand(2, 3, 56, 56)
    with torch.no_grad():
        before = model(x)
        plain = _build(tiny_vit_weights).eval()  # same base weights, no LoRA update
        assert not torch.allclose(before.embedding, plain(x).embedding, atol=1e-4)
        assert model.merge_adapters() == 8
        after = model(x)
    torch.testing.assert_close(after.embedding, before.embedding, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(after.logits, before.logits, rtol=1e-4, atol=1e-5)
    assert not lora_modules(model.backbone) and model.merged
    # the merged backbone is a plain timm model again: its state dict loads strictly into one
    fresh = create_backbone(get_backbone_spec("tiny-vit-reg4"))
    fresh.load_state_dict(model.backbone.state_dict(), strict=True)
    # merged: the backbone now differs from the base weights, so it is part of the trained state, with
    # the key set of a fully fine-tuned model (the form it reloads into)
    assert set(model.trainable_state_dict()) == set(model.state_dict())
    full = _build(tiny_vit_weights, adaptation="full").eval()
    full.load_trainable_state_dict(model.trainable_state_dict())
    with torch.no_grad():
        torch.testing.assert_close(full(x).logits, before.logits, rtol=1e-4, atol=1e-5)


def test_adapters_alone_save_and_load(tmp_path: Path, tiny_vit_weights: Path) -> None:
    source = _build(tiny_vit_weights).eval()
    _randomise_lora(source)
    source.save_adapters(tmp_path / "adapters")
    saved = load_file(str(tmp_path / "adapters" / ADAPTER_WEIGHTS))
    assert set(saved) == {f"{m}.lora_{ab}.weight" for m in VIT_ADAPTED for ab in "AB"}
    assert (tmp_path / "adapters" / ADAPTER_CONFIG).is_file()
    assert (tmp_path / "adapters" / ADAPTER_WEIGHTS).stat().st_size < 100_000

    target = _build(tiny_vit_weights, seed=5).eval()
    x = torch.rand(2, 3, 56, 56)
    with torch.no_grad():
        assert not torch.allclose(target.embed(x), source.embed(x), atol=1e-4)
        target.load_adapters(tmp_path / "adapters")
        torch.testing.assert_close(target.embed(x), source.embed(x), rtol=0, atol=0)

    wider = _build(tiny_vit_weights, lora=LoraSettings(rank=8))
    with pytest.raises(WeightsError, match="16 mis-shaped"):
        wider.load_adapters(tmp_path / "adapters")


def test_trainable_state_dict_round_trip_gives_identical_outputs(
    tmp_path: Path, tiny_vit_weights: Path
) -> None:
    source = _build(tiny_vit_weights, head_hidden=8).eval()
    _randomise_lora(source)
    state = source.trainable_state_dict()
    assert state and all(".lora_" in k or not k.startswith("backbone.") for k in state)
    save_file(state, str(tmp_path / "trainable.safetensors"))

    target = _build(tiny_vit_weights, seed=7, head_hidden=8).eval()
    target.load_trainable_state_dict(load_file(str(tmp_path / "trainable.safetensors")))
    x = torch.rand(2, 3, 64, 48)
    with torch.no_grad():
        a, b = source(x), target(x)
    for got, want in zip(b, a):
        torch.testing.assert_close(got, want, rtol=0, atol=0)

    linear_head = _build(tiny_vit_weights, head_hidden=0)
    with pytest.raises(WeightsError, match=r"trainable weights do not fit.*2 unexpected.*2 mis-shaped"):
        linear_head.load_trainable_state_dict(state)


def test_cnn_lora_adapts_pointwise_convs_and_keeps_batchnorm_frozen() -> None:
    model = _build(None, backbone="tiny-efficientnet")
    adapted = model.adaptation.adapted_modules
    assert adapted and all(n.endswith(("conv_pw", "conv_pwl")) or n == "conv_head" for n in adapted)
    assert not any("conv_dw" in n or "conv_stem" in n for n in adapted)
    model.train()
    assert model.head.training
    batchnorms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert batchnorms and not any(m.training for m in batchnorms)
    stats = batchnorms[0].running_mean.clone()
    model(torch.rand(2, 3, 64, 64)).logits.sum().backward()
    assert torch.equal(batchnorms[0].running_mean, stats)

    model.eval()
    _randomise_lora(model)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before = model.embed(x)
        model.merge_adapters()
        torch.testing.assert_close(model.embed(x), before, rtol=1e-4, atol=1e-4)


def test_full_and_frozen_modes() -> None:
    full = _build(None, backbone="tiny-efficientnet", adaptation="full")
    assert all(p.requires_grad for p in full.parameters())
    assert full.adaptation.trainable_backbone_parameters == full.adaptation.backbone_parameters
    assert "backbone.bn1.running_mean" in full.trainable_state_dict()
    full.train()
    assert all(m.training for m in full.backbone.modules())

    frozen = _build(None, backbone="tiny-vit-reg4", adaptation="frozen", head_hidden=16)
    assert frozen.adaptation.trainable_backbone_parameters == 0
    assert all(not k.startswith("backbone.") for k in frozen.trainable_state_dict())
    frozen.train()
    assert not frozen.backbone.training and frozen.head.training


def test_lora_target_matching_nothing_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError, match=r"target_modules nothing\\\.here cannot be applied.*blocks\.0\.attn\.qkv"
    ):
        _build(None, lora=LoraSettings(rank=2, target_modules=r"nothing\.here"))
    with pytest.raises(ConfigError, match="not a valid regex"):
        LoraSettings(target_modules="blocks.(").validate()


def test_gradient_checkpointing_keeps_lora_gradients(tiny_vit_weights: Path) -> None:
    grads = []
    for checkpointing in (False, True):
        model = _build(tiny_vit_weights, gradient_checkpointing=checkpointing)
        _randomise_lora(model)
        assert model.backbone.grad_checkpointing is checkpointing
        torch.manual_seed(3)
        model(torch.rand(2, 3, 56, 56)).logits.sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any(".lora_A." in n for n in grads[1])
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6)
