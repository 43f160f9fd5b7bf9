"""Backbone specs: the giants' architecture checked on the meta device, lookup errors, timm: names."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import pytest
import torch

from mitotype.errors import ConfigError
from mitotype.models import adaptation, classifier, registry
from mitotype.models.registry import (
    BackboneSpec,
    count_parameters,
    create_backbone,
    get_backbone_spec,
    list_backbones,
    meta_state_dict_shapes,
    register_backbone,
)

TABLE = json.loads((Path(__file__).parent / "data" / "h_optimus_0_state_dict.json").read_text())

# Key names and shapes of the published bioptimus/H-optimus-0 checkpoint (ViT-g/14, 4 registers,
# SwiGLU MLP with 4096 hidden units packed as 8192, LayerScale, no position embedding for the class token).
PUBLISHED_H_OPTIMUS_0 = {
    "cls_token": (1, 1, 1536),
    "reg_token": (1, 4, 1536),
    "pos_embed": (1, 256, 1536),
    "patch_embed.proj.weight": (1536, 3, 14, 14),
    "blocks.0.ls1.gamma": (1536,),
    "blocks.0.attn.qkv.weight": (4608, 1536),
    "blocks.0.mlp.fc1.weight": (8192, 1536),
    "blocks.39.mlp.fc2.weight": (1536, 4096),
    "norm.weight": (1536,),
}


def test_h_optimus_0_has_the_published_parameter_count_on_meta() -> None:
    spec = get_backbone_spec("h-optimus-0")
    model = create_backbone(spec, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == 1_134_774_272
    assert count_parameters(spec) == 1_134_774_272 == TABLE["num_parameters"]


def test_h_optimus_0_state_dict_matches_the_key_table() -> None:
    shapes = meta_state_dict_shapes(get_backbone_spec("h-optimus-0"))
    assert [[k, list(s)] for k, s in shapes.items()] == TABLE["state_dict"]
    for key, shape in PUBLISHED_H_OPTIMUS_0.items():
        assert shapes[key] == shape, key
    assert len([k for k in shapes if k.endswith(".ls1.gamma")]) == 40
    assert not any(k.startswith("head.") for k in shapes)


def test_h_optimus_0_strict_load_accepts_a_checkpoint_with_the_table_keys() -> None:
    model = create_backbone(get_backbone_spec("h-optimus-0"), device="meta")
    checkpoint = {k: torch.empty(s, device="meta") for k, s in TABLE["state_dict"]}
    result = model.load_state_dict(checkpoint, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    with pytest.raises(RuntimeError, match="Unexpected key"):
        model.load_state_dict({**checkpoint, "mask_token": torch.empty(1, 1536, device="meta")}, strict=True)


@pytest.mark.parametrize(
    ("name", "params", "prefix_tokens", "width", "embed"),
    [
        ("h-optimus-1", 1_134_774_272, 5, 1536, 1536),
        ("uni2-h", 681_394_176, 9, 1536, 1536),
        ("virchow2", 631_239_424, 5, 1280, 2560),
        ("dinov2-small", 21_628_800, 1, 384, 384),
        ("dinov2-base", 85_724_928, 1, 768, 768),
    ],
)
def test_foundation_model_specs_on_meta(
    name: str, params: int, prefix_tokens: int, width: int, embed: int
) -> None:
    spec = get_backbone_spec(name)
    model = create_backbone(spec, device="meta")
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.num_prefix_tokens == prefix_tokens  # class token + register tokens
    assert model.num_features == width
    assert spec.embed_dim == embed
    assert spec.input_size == 224 and spec.hub_id


def test_virchow2_and_uni2_use_swiglu_and_silu() -> None:
    for name in ("virchow2", "uni2-h", "tiny-vit-virchow"):
        model = create_backbone(get_backbone_spec(name), device="meta")
        assert type(model.blocks[0].mlp).__name__ == "GluMlp", name
        assert isinstance(model.blocks[0].mlp.act, torch.nn.SiLU), name


def test_tiny_stand_ins_share_module_names_with_the_giants() -> None:
    for tiny, big in (("tiny-vit-reg4", "h-optimus-0"), ("tiny-vit-virchow", "virchow2")):
        tiny_keys = {k.split(".", 2)[-1] for k in meta_state_dict_shapes(get_backbone_spec(tiny))}
        big_keys = {k.split(".", 2)[-1] for k in meta_state_dict_shapes(get_backbone_spec(big))}
        assert tiny_keys == big_keys


def test_unknown_backbone_lists_known_names() -> None:
    with pytest.raises(ConfigError, match=r"unknown backbone 'h-optimus-9'.*h-optimus-0.*virchow2"):
        get_backbone_spec("h-optimus-9")


def test_timm_names_derive_a_spec() -> None:
    cnn = get_backbone_spec("timm:resnet18")
    assert (cnn.family, cnn.pooling, cnn.embed_dim, cnn.input_size) == ("cnn", "avg", 512, 224)
    vit = get_backbone_spec("timm:vit_tiny_patch16_224")
    assert (vit.family, vit.pooling, vit.embed_dim) == ("vit", "cls", 192)
    with pytest.raises(ConfigError, match="no architecture"):
        get_backbone_spec("timm:not_a_model_at_all")


def test_register_backbone_refuses_duplicates_and_bad_pooling() -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_backbone(get_backbone_spec("h-optimus-0"))
    with pytest.raises(ConfigError, match="pooling"):
        register_backbone(BackboneSpec(name="x-bad", architecture="resnet18", pooling="max"))  # type: ignore[arg-type]
    names = [s.name for s in list_backbones(include_tests=False)]
    assert "h-optimus-0" in names and "tiny-vit-reg4" not in names


@pytest.mark.parametrize(
    "cls", [registry.BackboneSpec, adaptation.LoraSettings, classifier.ModelConfig], ids=lambda c: c.__name__
)
def test_every_config_field_has_a_docstring(cls: type) -> None:
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    undocumented = [
        stmt.target.id
        for stmt, nxt in zip(body, [*body[1:], None])
        if isinstance(stmt, ast.AnnAssign)
        and not (isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant))
    ]
    assert undocumented == []


def test_a_vit_refuses_an_input_size_its_patch_embedding_cannot_take() -> None:
    """Read off timm's own patch embedding: fixed position embeddings take one size, dynamic ones a patch multiple."""
    from mitotype.models.registry import input_size_problem
    from mitotype.training.config import load_config

    fixed, dynamic = get_backbone_spec("tiny-vit-reg4"), get_backbone_spec("tiny-vit-virchow")
    assert input_size_problem(fixed, 56) is None
    assert input_size_problem(fixed, 112) == "takes 56x56 inputs only (its position embeddings are fixed)"
    assert input_size_problem(dynamic, 70) is None
    assert input_size_problem(dynamic, 60) == "needs a multiple of its 14-pixel patch (e.g. 56 or 70)"
    assert input_size_problem(get_backbone_spec("tiny-efficientnet"), 61) is None  # a CNN takes any size
    with pytest.raises(ConfigError, match=r"model.input_size=128: backbone tiny-vit-reg4 takes 56x56 inputs only"):
        load_config(overrides=["model.backbone=tiny-vit-reg4", "model.input_size=128"])
