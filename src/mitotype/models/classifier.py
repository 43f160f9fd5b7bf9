"""The mitotic-figure classifier: backbone + classification, projection and domain heads.

``MitoClassifier`` owns its preprocessing (resize to the backbone's input size, normalisation with
the backbone's mean/std), so every caller — trainer, evaluator, challenge container — feeds the same
thing: float RGB in [0, 1], B x 3 x H x W, any H and W. The single logit is for p(atypical).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mitotype.errors import ConfigError, WeightsError
from mitotype.models.adaptation import (
    ADAPTATION_MODES,
    AdaptationReport,
    LoraSettings,
    adapt_backbone,
    load_adapters,
    merge_lora,
    save_adapters,
)
from mitotype.models.registry import BackboneSpec, get_backbone_spec, input_size_problem
from mitotype.models.stain import StainNormSettings, build_stain_normalizer
from mitotype.models.weights import RANDOM, LoadReport, build_backbone
from mitotype.settings import Settings, from_dict, one_of, value_range


@dataclass
class ModelConfig(Settings):
    """What to build; nested in the training configuration and stored in checkpoints."""

    where: ClassVar[str] = "model"
    """Where this block sits in the run configuration (named in error messages)."""

    backbone: str = "h-optimus-0"
    """Registry name (``mitotype models list``) or ``timm:<architecture>``."""
    weights: str | None = None
    """File, folder, ``hf-hub:org/name`` or ``org/name``; ``None`` = the backbone's default source
    (its Hub repository or bundled file; random for test stand-ins); ``"random"`` = random init."""
    strict_weights: bool = True
    """Refuse weights that leave model keys missing, unexpected or mis-shaped."""
    adaptation: str = field(default="lora", metadata=one_of(*ADAPTATION_MODES))
    """``lora`` (adapters on the frozen backbone), ``full`` (fine-tune everything) or ``frozen``
    (train only the heads: a linear probe, or an MLP probe with ``head_hidden > 0``)."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """LoRA hyper-parameters (used when ``adaptation == "lora"``)."""
    head_hidden: int = field(default=0, metadata=value_range(0, None))
    """Hidden width of the classification head; 0 = a single linear layer."""
    head_dropout: float = field(default=0.1, metadata=value_range(0, 1, hi_open=True))
    """Dropout on the embedding before the classification head (and between its layers)."""
    proj_dim: int = field(default=128, metadata=value_range(1, None))
    """Output size of the projection head feeding the supervised contrastive loss."""
    domain_hidden: int = field(default=256, metadata=value_range(1, None))
    """Hidden width of the domain-adversarial head (built only when ``num_domains >= 2``)."""
    input_size: int | None = field(default=None, metadata=value_range(32, 1024))
    """Side of the square input the backbone sees; ``None`` = the backbone's own (224 for the ViTs).
    CNNs run at the native 128 px patch size with no resampling (``input_size: 128``)."""
    gradient_checkpointing: bool = False
    """Recompute block activations in the backward pass (timm ``set_grad_checkpointing``): less
    memory for the giant ViTs at the cost of roughly one extra forward."""
    stain_norm: StainNormSettings = field(default_factory=StainNormSettings)
    """Stain normalisation toward a reference fitted on the training figures, the first step of the
    model's preprocessing (so training and every inference path apply it); off by default."""

    def check(self) -> None:
        spec = get_backbone_spec(self.backbone)  # a registered backbone (or timm:<arch>)
        problem = input_size_problem(spec, self.input_size) if self.input_size is not None else None
        if problem:
            raise ConfigError(f"model.input_size={self.input_size}: backbone {self.backbone} {problem}")
        if not isinstance(self.lora, LoraSettings):
            raise ConfigError("model.lora must be LoRA settings (rank, alpha, dropout, target_modules)")
        if not isinstance(self.stain_norm, StainNormSettings):
            raise ConfigError("model.stain_norm must be stain normalisation settings (method, fit_figures, ...)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready dict (round-trips through :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build and validate from a plain dict (the one settings loader), rejecting unknown keys."""
        return from_dict(cls, data, "model")


class ClassifierOutput(NamedTuple):
    """Everything the losses need from one forward pass."""

    logits: torch.Tensor
    """(B,) logit of p(atypical)."""
    embedding: torch.Tensor
    """(B, E) pooled backbone embedding."""
    projection: torch.Tensor
    """(B, P) L2-normalised projection for the supervised contrastive loss."""
    domain_logits: torch.Tensor | None = None
    """(B, D) domain logits behind the gradient reversal layer, or ``None`` without a domain head."""


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-coeff`` backward (DANN)."""
    return _ReverseGradient.apply(x, coeff)


class GradientReversal(nn.Module):
    """Gradient reversal layer: the backbone learns to *confuse* the domain head."""

    def __init__(self, coeff: float = 1.0) -> None:
        super().__init__()
        self.coeff = float(coeff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(x, self.coeff)

    def extra_repr(self) -> str:
        return f"coeff={self.coeff}"


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    if hidden <= 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(in_dim, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, out_dim),
    )


class MitoClassifier(nn.Module):
    """Backbone with its preprocessing, a one-logit head, a projection head and an optional domain head."""

    def __init__(
        self,
        backbone: nn.Module,
        spec: BackboneSpec,
        config: ModelConfig,
        num_domains: int = 0,
        load_report: LoadReport | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.config = config
        self.input_size = config.input_size or spec.input_size
        self.num_domains = num_domains
        self.load_report = load_report
        self.merged = False
        self.backbone = backbone
        self.stain_norm = build_stain_normalizer(config.stain_norm)
        """Stain normalisation toward the reference in its buffers (``None`` = off)."""
        self.register_buffer("pixel_mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        _enable_fused_attention(backbone)
        if config.gradient_checkpointing:
            if not hasattr(backbone, "set_grad_checkpointing"):
                raise ConfigError(f"{spec.name}: this backbone does not support gradient checkpointing")
            backbone.set_grad_checkpointing(True)
        self.adaptation: AdaptationReport = adapt_backbone(backbone, spec, config.adaptation, config.lora)
        dim = spec.embed_dim
        self.head = _mlp(dim, config.head_hidden, 1, config.head_dropout)
        proj_hidden = max(config.proj_dim, min(dim, 512))
        self.projector = nn.Sequential(
            nn.Linear(dim, proj_hidden), nn.ReLU(), nn.Linear(proj_hidden, config.proj_dim)
        )
        self.grl = GradientReversal(1.0)
        self.domain_head: nn.Module | None = None
        if num_domains:
            self.domain_head = nn.Sequential(
                nn.Linear(dim, config.domain_hidden), nn.ReLU(), nn.Linear(config.domain_hidden, num_domains)
            )

    # ----------------------------------------------------------------------------------- forward

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB at any size -> normalised tensor at the backbone's input size."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images B x 3 x H x W, got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"expected float images in [0, 1], got {images.dtype} (divide uint8 by 255)")
        if self.stain_norm is not None:
            images = self.stain_norm(images)
        # Memory layout matters more than it looks on a CPU: CNN convolutions run ~1.5x faster on
        # channels-last input, while a ViT's resize and patch embedding are faster on contiguous input
        # (benchmarks/results/inference.json). Batches arrive in either layout (a permuted uint8
        # gather is channels-last, dihedral TTA views are contiguous), so the model picks its own.
        layout = torch.channels_last if self.spec.family == "cnn" else torch.contiguous_format
        images = images.contiguous(memory_format=layout)
        size = self.input_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(
                images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        return (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, E) pooled embedding of [0, 1] RGB images."""
        feats = self.backbone.forward_features(self.preprocess(images))
        if feats.ndim == 4:  # CNN feature map
            return feats.mean(dim=(2, 3))
        prefix = int(getattr(self.backbone, "num_prefix_tokens", 1))
        pooling = self.spec.pooling
        if pooling == "cls":
            return feats[:, 0]
        if pooling == "cls+mean":
            return torch.cat([feats[:, 0], feats[:, prefix:].mean(dim=1)], dim=-1)
        return feats[:, prefix:].mean(dim=1)

    def forward(self, images: torch.Tensor) -> ClassifierOutput:
        return self.heads(self.embed(images))

    def heads(self, embedding: torch.Tensor) -> ClassifierOutput:
        """The heads on (B, E) embeddings: what trains on cached embeddings of a frozen backbone."""
        logits = self.head(embedding).squeeze(-1)
        projection = F.normalize(self.projector(embedding), dim=-1)
        domain_logits = self.domain_head(self.grl(embedding)) if self.domain_head is not None else None
        return ClassifierOutput(logits, embedding, projection, domain_logits)

    # ------------------------------------------------------------------------------- training aids

    def set_grl_lambda(self, coeff: float) -> None:
        """Set the gradient-reversal coefficient (the domain-adversarial strategy ramps it up over training)."""
        self.grl.coeff = float(coeff)

    @property
    def backbone_mode(self) -> str:
        """How the backbone trains now: the configured adaptation, or ``frozen`` once merged."""
        return "frozen" if self.merged else self.config.adaptation

    def train(self, mode: bool = True) -> MitoClassifier:
        """Like ``nn.Module.train``, but a backbone that is not fully fine-tuned keeps its pretrained
        BatchNorm statistics (BatchNorm in eval) and a frozen backbone stays entirely in eval."""
        super().train(mode)
        if mode and self.backbone_mode != "full":
            if self.backbone_mode == "frozen":
                self.backbone.eval()
            else:
                for module in self.backbone.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what differs from the pretrained weights: parameters with ``requires_grad`` (LoRA +
        heads), the reference of stain normalisation when it is on — or the whole backbone with its buffers
        (BatchNorm statistics) when it is fully fine-tuned or has LoRA merged into it (such a state reloads
        into ``adaptation="full"``)."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        if self.stain_norm is not None:  # the reference stain, fitted on the training figures
            names |= {f"stain_norm.{n}" for n, _ in self.stain_norm.named_buffers()}
        if self.config.adaptation == "full" or self.merged:
            names |= {f"backbone.{n}" for n, _ in self.backbone.named_parameters()}
            names |= {f"backbone.{n}" for n, _ in self.backbone.named_buffers()}
        return {k: v.detach() for k, v in self.state_dict().items() if k in names}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a :meth:`trainable_state_dict`; strict over exactly those keys and shapes."""
        expected = self.trainable_state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        mismatched = [
            f"{k}: given {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
            for k in sorted(set(state) & set(expected))
            if tuple(state[k].shape) != tuple(expected[k].shape)
        ]
        if missing or unexpected or mismatched:
            parts = [
                f"{len(x)} {label} ({', '.join(x[:5])}{', ...' if len(x) > 5 else ''})"
                for label, x in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched))
                if x
            ]
            raise WeightsError(
                f"trainable weights do not fit this {self.spec.name} model "
                f"({self.backbone_mode}, {self.num_domains} domains): {'; '.join(parts)}"
            )
        result = self.load_state_dict(state, strict=False)
        assert not result.unexpected_keys, result.unexpected_keys

    def merge_adapters(self) -> int:
        """Fold LoRA into the backbone weights (export); outputs are unchanged. The backbone is then
        frozen and part of :meth:`trainable_state_dict`. Returns the number of merged modules."""
        count = merge_lora(self.backbone)
        if count:
            self.merged = True
            self.backbone.requires_grad_(False)
        return count

    def save_adapters(self, directory: Path | str) -> Path:
        """Write the LoRA adapters alone (safetensors + JSON) into ``directory``."""
        return save_adapters(self.backbone, self.spec, directory)

    def load_adapters(self, directory: Path | str) -> None:
        """Load adapters written by :meth:`save_adapters` (strict)."""
        load_adapters(self.backbone, self.spec, directory)

    # --------------------------------------------------------------------------------- description

    @property
    def preprocessing(self) -> dict[str, Any]:
        """The input contract, stored in checkpoints and exports (``input_size`` is C, H, W as in timm)."""
        return {
            "backbone": self.spec.name,
            "input_range": [0.0, 1.0],
            "input_size": [3, self.input_size, self.input_size],
            "resize": "bilinear, antialias, align_corners=False (inside the model)",
            "mean": list(self.spec.mean),
            "std": list(self.spec.std),
            **({"stain_norm": self.stain_norm.reference()} if self.stain_norm is not None else {}),
        }

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description that rebuilds this model with :func:`build_classifier`."""
        return {
            "model": self.config.to_dict(),
            "num_domains": self.num_domains,
            "merged": self.merged,
            "preprocessing": self.preprocessing,
            "embed_dim": self.spec.embed_dim,
        }


def _enable_fused_attention(backbone: nn.Module) -> None:
    """Make timm attention use PyTorch's fused scaled-dot-product attention."""
    for module in backbone.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = True


def _backbone_width(backbone: nn.Module, spec: BackboneSpec) -> int:
    width = int(getattr(backbone, "num_features", spec.embed_dim))
    return 2 * width if spec.pooling == "cls+mean" else width


def build_device(cfg: ModelConfig, device: str | torch.device) -> torch.device:
    """Where to build the classifier that will run on ``device``.

    On ``device`` itself when the backbone loads pretrained weights (no host copy of a 1 B-parameter
    model); on the CPU when it starts from random weights, so that a model trained with ``weights:
    random`` (and its saved adapters and heads) is re-created identically on any machine: CUDA random
    streams differ from the CPU's, and between GPU models.
    """
    source = cfg.weights if cfg.weights is not None else get_backbone_spec(cfg.backbone).default_weights
    return torch.device("cpu") if source in (None, RANDOM) else torch.device(device)


def build_classifier(cfg: ModelConfig, num_domains: int = 0) -> MitoClassifier:
    """Build the classifier of ``cfg``: backbone with weights, adaptation, heads.

    ``num_domains`` (>= 2) adds the domain-adversarial head; 0 leaves it out.
    """
    cfg.validate()
    if num_domains < 0 or num_domains == 1:
        raise ConfigError(
            f"num_domains must be 0 (no domain head) or >= 2 (domain-adversarial head), got {num_domains}"
        )
    spec = get_backbone_spec(cfg.backbone)
    backbone, report = build_backbone(spec, cfg.weights, strict=cfg.strict_weights)
    classifier = backbone.get_classifier() if hasattr(backbone, "get_classifier") else None
    if isinstance(classifier, nn.Module) and any(True for _ in classifier.parameters()):
        backbone.reset_classifier(0)
    if _backbone_width(backbone, spec) != spec.embed_dim:
        raise ConfigError(
            f"{spec.name}: spec says embed_dim {spec.embed_dim} but the backbone gives "
            f"{_backbone_width(backbone, spec)} with {spec.pooling} pooling"
        )
    return MitoClassifier(backbone, spec, cfg, num_domains=num_domains, load_report=report)
