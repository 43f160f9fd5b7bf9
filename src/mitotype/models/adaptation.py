"""How the backbone is adapted: LoRA (through peft), full fine-tuning, or frozen (linear/MLP probe).

LoRA is injected in place (``peft.inject_adapter_in_model``) so module names stay those of the timm
model plus peft's ``base_layer`` / ``lora_A.default`` / ``lora_B.default`` levels. ``target_modules``
is always a full-match regex: peft's list form matches by suffix and ``proj`` would also catch
``patch_embed.proj``.

CNNs (EfficientNet) in ``lora`` mode get LoRA on their pointwise 1x1 convolutions (``conv_pw``,
``conv_pwl`` in the blocks and ``conv_head``), where most weights sit; depthwise convs, stem and
BatchNorm stay frozen and BatchNorm keeps its ImageNet running statistics (the classifier holds it in
eval mode). Full fine-tuning is the alternative for such small CNNs (``adaptation="full"``).

Adapters alone are saved as ``adapter_model.safetensors`` (peft key naming, adapter name removed) and
``adapter_config.json``; they can be merged into the base weights for export.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from mitotype.errors import ConfigError, WeightsError
from mitotype.ioutils import atomic_save_safetensors, atomic_write_text
from mitotype.models.registry import BackboneSpec
from mitotype.settings import Settings, from_dict, value_range

if TYPE_CHECKING:
    import torch
    from torch import nn

AdaptationMode = Literal["lora", "full", "frozen"]
ADAPTATION_MODES: tuple[str, ...] = ("lora", "full", "frozen")
ADAPTER_NAME = "default"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class LoraSettings(Settings):
    """LoRA hyper-parameters (peft ``LoraConfig``)."""

    where: ClassVar[str] = "model.lora"
    """Where this block sits in the run configuration (named in error messages)."""

    rank: int = field(default=16, metadata=value_range(1, None))
    """Rank r of the low-rank update B @ A."""
    alpha: float = field(default=32.0, metadata=value_range(0, None, lo_open=True))
    """Scaling numerator: the update is multiplied by alpha / rank."""
    dropout: float = field(default=0.05, metadata=value_range(0, 1, hi_open=True))
    """Dropout on the input of the LoRA branch (training only)."""
    target_modules: str | None = None
    """Full-match regex over module names to adapt; ``None`` takes the backbone's default
    (ViT: ``blocks.N.attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``; never ``patch_embed.proj``)."""

    def check(self) -> None:
        if self.target_modules is not None:
            try:
                re.compile(self.target_modules)
            except re.error as exc:
                raise ConfigError(f"lora.target_modules is not a valid regex: {exc}") from None

    def target_for(self, spec: BackboneSpec) -> str:
        """The regex actually used for ``spec``."""
        return self.target_modules or spec.lora_target


@dataclass(frozen=True)
class AdaptationReport:
    """Which parameters train: reported at build time and logged by the trainer."""

    mode: str
    """``lora``, ``full`` or ``frozen``."""
    backbone_parameters: int
    """Parameters of the pretrained backbone (LoRA weights excluded)."""
    trainable_backbone_parameters: int
    """Of those plus LoRA weights, how many receive gradients (LoRA weights in ``lora`` mode)."""
    adapted_modules: tuple[str, ...] = ()
    """Names of the modules carrying LoRA (empty unless ``lora``)."""
    target_modules: str | None = None
    """The LoRA target regex used (``None`` unless ``lora``)."""

    def describe(self) -> str:
        """One line for logs."""
        extra = f", {len(self.adapted_modules)} modules adapted" if self.adapted_modules else ""
        return (
            f"{self.mode}: {self.trainable_backbone_parameters:,} trainable backbone parameters "
            f"(backbone {self.backbone_parameters:,}{extra})"
        )


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _is_lora_param(name: str) -> bool:
    return ".lora_" in name or name.startswith("lora_")


def lora_modules(module: nn.Module) -> dict[str, nn.Module]:
    """Modules of ``module`` wrapped by a peft tuner layer, by name."""
    # start-up time: torch, peft and safetensors load only when a model is adapted or read
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {n: m for n, m in module.named_modules() if isinstance(m, BaseTunerLayer)}


def adapt_backbone(
    backbone: nn.Module, spec: BackboneSpec, mode: str, lora: LoraSettings | None = None
) -> AdaptationReport:
    """Prepare ``backbone`` in place for ``mode`` and set ``requires_grad`` accordingly."""
    if mode not in ADAPTATION_MODES:
        raise ConfigError(f"unknown adaptation {mode!r}; choose one of {', '.join(ADAPTATION_MODES)}")
    base = count_parameters(backbone)
    if mode == "full":
        backbone.requires_grad_(True)
        return AdaptationReport(mode, base, base)
    if mode == "frozen":
        backbone.requires_grad_(False)
        return AdaptationReport(mode, base, 0)
    lora = lora or LoraSettings()
    lora.validate()
    target = lora.target_for(spec)
    # start-up time: torch, peft and safetensors load only when a model is adapted or read
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=target,
        bias="none",
    )
    try:
        inject_adapter_in_model(config, backbone, adapter_name=ADAPTER_NAME)
    except ValueError as exc:
        # start-up time: torch, peft and safetensors load only when a model is adapted or read
        from torch import nn

        names = [n for n, m in backbone.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))][:8]
        raise ConfigError(
            f"{spec.name}: LoRA target_modules {target} cannot be applied ({str(exc).splitlines()[0]}); "
            f"adaptable layers look like: {', '.join(names)}"
        ) from None
    for name, param in backbone.named_parameters():
        param.requires_grad_(_is_lora_param(name))
    adapted = tuple(lora_modules(backbone))
    trainable = count_parameters(backbone, trainable_only=True)
    return AdaptationReport(mode, base, trainable, adapted, target)


def merge_lora(backbone: nn.Module) -> int:
    """Fold every LoRA update into its base layer and remove the LoRA modules (export; the outputs
    do not change). Returns the number of merged modules."""
    layers = lora_modules(backbone)
    for name, layer in layers.items():
        layer.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = backbone.get_submodule(parent_name) if parent_name else backbone
        setattr(parent, child, layer.get_base_layer())
    if hasattr(backbone, "peft_config"):
        del backbone.peft_config
    return len(layers)


def adapter_state_dict(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """LoRA tensors keyed like peft's saved adapters (``blocks.0.attn.qkv.lora_A.weight``)."""
    marker = f".{ADAPTER_NAME}."
    return {n.replace(marker, "."): p.detach() for n, p in backbone.named_parameters() if _is_lora_param(n)}


def save_adapters(backbone: nn.Module, spec: BackboneSpec, directory: Path | str) -> Path:
    """Write the LoRA weights (safetensors) and their configuration (JSON) into ``directory``."""
    state = adapter_state_dict(backbone)
    if not state:
        raise ConfigError(f"{spec.name}: no LoRA adapters to save (adaptation is not 'lora' or was merged)")
    directory = Path(directory)
    config = backbone.peft_config[ADAPTER_NAME].to_dict()
    config = json.loads(json.dumps(config, default=lambda o: sorted(o) if isinstance(o, set) else str(o)))
    atomic_save_safetensors(
        state, directory / ADAPTER_WEIGHTS, {"backbone": spec.name, "format": "mitotype-lora"}
    )
    atomic_write_text(directory / ADAPTER_CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return directory


def load_adapters(backbone: nn.Module, spec: BackboneSpec, directory: Path | str) -> None:
    """Load adapters saved by :func:`save_adapters` into a backbone adapted the same way (strict)."""
    # start-up time: torch, peft and safetensors load only when a model is adapted or read
    from safetensors import safe_open

    path = Path(directory) / ADAPTER_WEIGHTS if Path(directory).is_dir() else Path(directory)
    if not path.is_file():
        raise WeightsError(f"{spec.name}: no adapters at {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        saved = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    if meta.get("backbone") not in (None, spec.name):
        raise WeightsError(f"{path} holds adapters for {meta['backbone']!r}, not {spec.name!r}")
    params = dict(backbone.named_parameters())
    marker = f".{ADAPTER_NAME}."
    expected = {n.replace(marker, "."): n for n in params if _is_lora_param(n)}
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    mismatched = [
        f"{k}: file {tuple(saved[k].shape)} vs model {tuple(params[expected[k]].shape)}"
        for k in sorted(set(saved) & set(expected))
        if saved[k].shape != params[expected[k]].shape
    ]
    if missing or unexpected or mismatched:
        parts = [
            f"{len(x)} {label} ({', '.join(x[:5])}{', ...' if len(x) > 5 else ''})"
            for label, x in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched))
            if x
        ]
        raise WeightsError(f"{spec.name}: adapters {path} do not fit this model: {'; '.join(parts)}")
    # start-up time: torch, peft and safetensors load only when a model is adapted or read
    import torch

    with torch.no_grad():
        for key, name in expected.items():
            params[name].copy_(saved[key])


def lora_settings_from_dict(data: dict) -> LoraSettings:
    """Build :class:`LoraSettings` from a plain dict (the one settings loader), rejecting unknown keys."""
    return from_dict(LoraSettings, data, "model.lora")
