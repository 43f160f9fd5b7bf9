"""One typed configuration for a training run: YAML file + ``key=value`` overrides, validated up front.

Every strategy of the method has its own settings block with an ``enabled`` switch, so that an
ablation is a one-line override (``strategies.mixup.enabled=false``). The configuration is saved
with every run, so a result can always be traced to the settings that made it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mitotype.errors import ConfigError
from mitotype.models.adaptation import LoraSettings
from mitotype.models.classifier import ModelConfig
from mitotype.training.augment import AugmentSettings
from mitotype.training.hard_mining import HardMiningSettings
from mitotype.training.losses import FocalSettings
from mitotype.training.mixup import MixUpSettings
from mitotype.training.sampler import SamplingSettings
from mitotype.yamlio import parse_yaml_file, parse_yaml_value

PRESETS_DIR = Path(__file__).resolve().parents[1] / "configs"


def _range(lo: float | None, hi: float | None) -> dict[str, Any]:
    return {"range": (lo, hi)}


@dataclass
class DataSettings:
    """Where the figures come from and how they are grouped."""

    path: str = ""
    """Dataset folder or file, read by :func:`mitotype.data.readers.read_dataset`."""
    format: str = "auto"
    """Reader name (``amibr``, ``midog25``, ``votes-csv``, ``folder``, ``csv``, ``coords``) or ``auto``."""
    domain: list[str] | None = None
    """Metadata fields the domain is built from (e.g. ``[scanner]``); ``None`` = the reader's default."""
    images_dir: str | None = None
    """Folder holding the images when it is not beside the label file."""
    on_error: Literal["fail", "skip"] = "fail"
    """Bad rows stop the run (``fail``) or are dropped and reported (``skip``)."""
    include: dict[str, str] = field(default_factory=dict)
    """Keep only records whose metadata matches, e.g. ``{benchmark_split: train}``."""
    cache_dir: str | None = None
    """Where the decode-once patch store lives; default ``$MITOTYPE_CACHE`` or ``~/.cache/mitotype``."""
    val_fraction: float = field(default=0.2, metadata=_range(0.05, 0.5))
    """Share of the training slides held out for model selection and the threshold."""


@dataclass
class SoftLabelSettings:
    """Targets blended from the experts' votes and the hard label."""

    enabled: bool = True
    """Use the vote fraction at all; off means hard 0/1 targets."""
    weight: float = field(default=0.5, metadata=_range(0.0, 1.0))
    """target = weight * soft + (1 - weight) * hard."""


@dataclass
class SupConSettings:
    """Supervised contrastive loss on the projection head."""

    enabled: bool = True
    """Add the contrastive term to the loss."""
    weight: float = field(default=0.1, metadata=_range(0.0, 10.0))
    """Its weight relative to the classification loss."""
    temperature: float = field(default=0.1, metadata=_range(0.01, 1.0))
    """Softmax temperature of the pair similarities."""


@dataclass
class DomainAdversarialSettings:
    """Domain classifier behind gradient reversal: the embedding should carry little domain signal."""

    enabled: bool = True
    """Train the domain head through the gradient-reversal layer."""
    weight: float = field(default=0.1, metadata=_range(0.0, 10.0))
    """Weight of the domain cross-entropy in the loss."""
    max_lambda: float = field(default=1.0, metadata=_range(0.0, 10.0))
    """Final gradient-reversal coefficient."""
    ramp: Literal["dann", "linear", "constant"] = "dann"
    """Schedule of the coefficient over training: DANN's 2/(1+exp(-10p))-1, linear, or constant."""


@dataclass
class StrategySettings:
    """The paper's domain-aware strategies, each with its own switch."""

    mixup: MixUpSettings = field(default_factory=MixUpSettings)
    """MixUp on images and soft targets."""
    soft_labels: SoftLabelSettings = field(default_factory=SoftLabelSettings)
    """Targets from the experts' votes."""
    focal: FocalSettings = field(default_factory=FocalSettings)
    """Adaptive focal loss (gamma 0 and adaptation off = weighted BCE)."""
    supcon: SupConSettings = field(default_factory=SupConSettings)
    """Supervised contrastive loss."""
    domain_adversarial: DomainAdversarialSettings = field(default_factory=DomainAdversarialSettings)
    """Domain head behind gradient reversal."""
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    """Domain-aware, class-balanced, hardness-biased sampling."""
    hard_mining: HardMiningSettings = field(default_factory=HardMiningSettings)
    """Periodic re-scoring of the training set to up-weight hard figures."""
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    """Batched tensor augmentation on the training device."""


@dataclass
class OptimSettings:
    """Optimiser, schedule and numerics."""

    epochs: int = field(default=10, metadata=_range(1, 10_000))
    """Training epochs (an epoch draws as many figures as the training set holds)."""
    batch_size: int = field(default=32, metadata=_range(2, 4096))
    """Global batch size (split across processes under DDP)."""
    lr: float = field(default=1e-3, metadata=_range(1e-7, 1.0))
    """Peak learning rate of the heads (and of everything under ``full`` fine-tuning)."""
    backbone_lr: float | None = field(default=None, metadata=_range(0.0, 1.0))
    """Peak learning rate of adapters/backbone; ``None`` = ``lr``."""
    weight_decay: float = field(default=0.01, metadata=_range(0.0, 1.0))
    """AdamW weight decay."""
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    """Warm-up then cosine decay, torch's one-cycle, or constant after warm-up."""
    warmup_epochs: float = field(default=1.0, metadata=_range(0.0, 100.0))
    """Linear warm-up length for the cosine and constant schedules."""
    grad_accum: int = field(default=1, metadata=_range(1, 1024))
    """Micro-batches accumulated per optimiser step."""
    grad_clip: float = field(default=1.0, metadata=_range(0.0, 1e6))
    """Max gradient norm; 0 disables clipping."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """Autocast dtype; ``auto`` = bf16 on a CUDA device that has it, else fp32 (fp16 is not offered: it
    needs loss scaling, and every GPU these backbones fit on has bf16)."""
    compile: bool = False
    """Wrap the model in ``torch.compile``."""
    eval_batch_size: int = field(default=128, metadata=_range(1, 8192))
    """Batch size for validation and scoring passes."""
    select_metric: Literal["balanced_accuracy", "roc_auc", "last"] = "balanced_accuracy"
    """Which epoch's weights are kept: the best validation balanced accuracy (ties broken by ROC AUC), the
    best validation ROC AUC (ties by balanced accuracy; threshold-free, so less noisy on a few hundred
    validation figures), or the last epoch. Thresholds are chosen on validation in every case."""
    patience: int = field(default=0, metadata=_range(0, 10_000))
    """Early stopping after this many epochs without a better ``select_metric``; 0 = never (and never
    with ``last``)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""


@dataclass
class TrainConfig:
    """Everything that defines a training run."""

    data: DataSettings = field(default_factory=DataSettings)
    """The figures and their grouping."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Backbone, weights, adaptation and heads."""
    optim: OptimSettings = field(default_factory=OptimSettings)
    """Optimiser, schedule and numerics."""
    strategies: StrategySettings = field(default_factory=StrategySettings)
    """The domain-aware strategies."""
    seed: int = field(default=0, metadata=_range(0, 2**31 - 1))
    """Seed of every random draw (sampling, augmentation, MixUp, initialisation, splits)."""
    threshold: Literal["val-balanced-accuracy", "fixed"] = "val-balanced-accuracy"
    """How the decision threshold is chosen: maximise validation balanced accuracy, or ``fixed_threshold``."""
    fixed_threshold: float = field(default=0.5, metadata=_range(0.0, 1.0))
    """Threshold used when ``threshold: fixed``."""


# --------------------------------------------------------------------------- loading and validation


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to the annotated type, or raise a ConfigError naming the key."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _from_dict(tp, value, where)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = [_coerce(v, args[0] if args else Any, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown configuration key '{dotted}'{hint}")
        kwargs[key] = _coerce(value, hints[key], dotted)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def _validate(obj: Any, where: str = "") -> None:
    """Check every field's declared range, recursively."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        dotted = f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value):
            _validate(value, dotted)
            continue
        lo, hi = f.metadata.get("range", (None, None))
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if numeric and not math.isfinite(value):
            raise ConfigError(f"{dotted} = {value} is not a finite number")
        if numeric and ((lo is not None and value < lo) or (hi is not None and value > hi)):
            raise ConfigError(f"{dotted} = {value} is out of range [{lo}, {hi}]")


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-data form of a configuration (lists for tuples, paths as strings)."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return convert(obj)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    data = parse_yaml_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a configuration must be a mapping at the top level")
    return data


def load_config(
    source: str | Path | dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    preset: str | None = None,
) -> TrainConfig:
    """Build a validated :class:`TrainConfig`.

    Layers, later winning: defaults, a named preset (``configs/<preset>.yaml``), a YAML file or dict,
    then ``key.sub=value`` overrides whose values are parsed as YAML (``strategies.mixup.alpha=0.4``).
    """
    data: dict[str, Any] = {}
    if preset:
        path = PRESETS_DIR / f"{preset}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown preset '{preset}'; available: {', '.join(list_presets())}")
        data = _deep_merge(data, _read_yaml(path))
    if isinstance(source, dict):
        data = _deep_merge(data, source)
    elif source is not None:
        data = _deep_merge(data, _read_yaml(Path(source)))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.sub=value")
        key, raw = item.split("=", 1)
        value = parse_yaml_value(raw, f"--set {key.strip()}") if raw.strip() else ""
        _set_dotted(data, key.strip(), value)
    config = _from_dict(TrainConfig, data)
    _validate(config)
    config.model.validate()  # backbone name, adaptation, LoRA: fail before any data is read
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", config.optim.device):
        raise ConfigError(f"optim.device = {config.optim.device!r}: use auto, cpu, cuda or cuda:N")
    return config


def save_config(config: TrainConfig, path: Path) -> None:
    from mitotype.ioutils import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(config), sort_keys=False))


__all__ = [
    "DataSettings",
    "DomainAdversarialSettings",
    "LoraSettings",
    "OptimSettings",
    "SoftLabelSettings",
    "StrategySettings",
    "SupConSettings",
    "TrainConfig",
    "list_presets",
    "load_config",
    "save_config",
    "to_dict",
]
