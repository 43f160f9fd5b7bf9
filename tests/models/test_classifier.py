"""MitoClassifier: input contract, pooling, heads, gradient reversal, configuration errors."""

from __future__ import annotations

import pytest
import torch

from mitotype.errors import ConfigError
from mitotype.models import LoraSettings, ModelConfig, build_classifier
from mitotype.models.classifier import ClassifierOutput, GradientReversal, reverse_gradient
from mitotype.models.registry import get_backbone_spec

LORA = LoraSettings(rank=2, alpha=4, dropout=0.0)


def _model(backbone: str = "tiny-vit-reg4", num_domains: int = 0, **kw: object):
    torch.manual_seed(0)
    return build_classifier(ModelConfig(backbone=backbone, lora=LORA, **kw), num_domains=num_domains)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [(40, 40), (56, 56), (128, 90)])
def test_output_shapes_for_any_input_size(size: tuple[int, int]) -> None:
    model = _model(num_domains=4, proj_dim=16).eval()
    out = model(torch.rand(3, 3, *size))
    assert isinstance(out, ClassifierOutput)
    assert out.logits.shape == (3,)
    assert out.embedding.shape == (3, 32)
    assert out.projection.shape == (3, 16)
    torch.testing.assert_close(out.projection.norm(dim=-1), torch.ones(3))
    assert out.domain_logits is not None and out.domain_logits.shape == (3, 4)


def test_no_domain_head_without_domains() -> None:
    out = _model().eval()(torch.rand(2, 3, 56, 56))
    assert out.domain_logits is None


def test_preprocessing_resizes_and_normalises_with_the_spec() -> None:
    model = _model()
    spec = get_backbone_spec("tiny-vit-reg4")
    x = model.preprocess(torch.full((1, 3, 128, 128), 0.5))
    assert x.shape == (1, 3, 56, 56)
    want = (0.5 - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    torch.testing.assert_close(x[0, :, 10, 10], want)
    assert model.preprocessing == {
        "backbone": "tiny-vit-reg4",
        "input_range": [0.0, 1.0],
        "input_size": [3, 56, 56],
        "resize": "bilinear, antialias, align_corners=False (inside the model)",
        "mean": list(spec.mean),
        "std": list(spec.std),
    }
    with pytest.raises(ValueError, match="float images"):
        model(torch.zeros(1, 3, 56, 56, dtype=torch.uint8))
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        model(torch.rand(3, 56, 56))


def test_virchow_pooling_is_class_token_and_mean_of_patch_tokens_without_registers() -> None:
    model = _model("tiny-vit-virchow").eval()
    assert model.backbone.num_prefix_tokens == 5  # class token + 4 registers
    x = torch.rand(2, 3, 56, 56)
    with torch.no_grad():
        tokens = model.backbone.forward_features(model.preprocess(x))
        emb = model.embed(x)
    assert tokens.shape == (2, 1 + 4 + 16, 32)
    assert emb.shape == (2, 64)
    torch.testing.assert_close(emb[:, :32], tokens[:, 0])
    torch.testing.assert_close(emb[:, 32:], tokens[:, 5:].mean(dim=1))
    assert not torch.allclose(emb[:, 32:], tokens[:, 1:].mean(dim=1))


def test_gradient_reversal_is_identity_forward_and_negates_scaled_gradient() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    y = reverse_gradient(x, 0.3)
    torch.testing.assert_close(y, x)
    weights = torch.randn(4, 3)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, -0.3 * weights)

    layer = GradientReversal(2.0)
    x2 = torch.randn(5, requires_grad=True)
    layer(x2).sum().backward()
    torch.testing.assert_close(x2.grad, torch.full((5,), -2.0))


def test_set_grl_lambda_scales_the_domain_gradient_reaching_the_embedding() -> None:
    model = _model(num_domains=3, adaptation="frozen").eval()
    x = torch.rand(2, 3, 56, 56)
    grads = {}
    for coeff in (0.0, 1.0, 0.5):
        model.set_grl_lambda(coeff)
        emb = model.embed(x).detach().requires_grad_(True)
        model.domain_head(model.grl(emb)).sum().backward()  # type: ignore[misc]
        grads[coeff] = emb.grad
    assert torch.count_nonzero(grads[0.0]) == 0
    torch.testing.assert_close(grads[0.5], 0.5 * grads[1.0])
    plain = model.embed(x).detach().requires_grad_(True)
    model.domain_head(plain).sum().backward()  # type: ignore[misc]
    torch.testing.assert_close(grads[1.0], -plain.grad)


def test_attention_uses_fused_sdpa() -> None:
    for name in ("tiny-vit-reg4", "tiny-vit-virchow"):
        attention = [m for m in _model(name).backbone.modules() if hasattr(m, "fused_attn")]
        assert len(attention) == 2 and all(m.fused_attn for m in attention)


def test_model_config_validation_and_round_trip() -> None:
    cfg = ModelConfig(backbone="tiny-vit-reg4", head_hidden=64, lora=LoraSettings(rank=8))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"unknown configuration key .model\.headhidden. \(did you mean"):
        ModelConfig.from_dict({"headhidden": 3})
    with pytest.raises(ConfigError, match=r"unknown configuration key .model\.lora\.r\b"):
        ModelConfig.from_dict({"lora": {"r": 3}})
    with pytest.raises(ConfigError, match="adaptation must be one of lora, full, frozen"):
        ModelConfig(adaptation="partial").validate()
    with pytest.raises(ConfigError, match="head_dropout"):
        ModelConfig(head_dropout=1.5).validate()
    with pytest.raises(ConfigError, match="unknown backbone"):
        ModelConfig(backbone="uni3").validate()
    with pytest.raises(ConfigError, match="num_domains must be 0"):
        build_classifier(ModelConfig(backbone="tiny-vit-reg4"), num_domains=1)


def test_metadata_rebuilds_the_same_architecture() -> None:
    model = _model(num_domains=2, head_hidden=8)
    meta = model.metadata()
    rebuilt = build_classifier(ModelConfig.from_dict(meta["model"]), num_domains=meta["num_domains"])
    assert rebuilt.trainable_state_dict().keys() == model.trainable_state_dict().keys()
    rebuilt.load_trainable_state_dict(model.trainable_state_dict())


def test_building_on_the_meta_device_reads_no_weights() -> None:
    """Sizing a giant (e.g. for the export memory estimate) allocates and downloads nothing."""
    with torch.device("meta"):
        model = build_classifier(ModelConfig(backbone="h-optimus-0"))  # default source: the Hub
    assert model.load_report is None
    assert all(p.is_meta for p in model.parameters())
    assert model.adaptation.backbone_parameters == 1_134_774_272
    assert model.adaptation.trainable_backbone_parameters == 40 * 16 * (
        (1536 + 4608) + (1536 + 1536) + (1536 + 8192) + (4096 + 1536)
    )


def test_random_weight_models_are_built_on_the_cpu_whatever_the_target() -> None:
    from mitotype.models.classifier import build_device

    # Random initialisation must not depend on the device's random stream, so it always happens on the
    # CPU; a backbone that loads pretrained weights is built where it will run.
    assert build_device(ModelConfig(backbone="tiny-vit-reg4"), "cuda").type == "cpu"
    assert build_device(ModelConfig(backbone="h-optimus-0", weights="random"), "cuda").type == "cpu"
    assert build_device(ModelConfig(backbone="h-optimus-0"), "cuda:1") == torch.device("cuda:1")
    assert build_device(ModelConfig(backbone="h-optimus-0", weights="/w/h0.safetensors"), "cpu").type == "cpu"
