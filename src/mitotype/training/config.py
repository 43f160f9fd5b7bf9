"""One typed configuration for a training run: YAML file + ``key=value`` overrides, validated up front.

Every strategy of the method has its own settings block with an ``enabled`` switch, so that an
ablation is a one-line override (``strategies.mixup.enabled=false``). The configuration is saved
with every run, so a result can always be traced to the settings that made it.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from mitotype.data.patches import DEFAULT_SIZE_POLICY, SizePolicy
from mitotype.errors import ConfigError
from mitotype.ioutils import atomic_write_text
from mitotype.models.adaptation import LoraSettings
from mitotype.models.classifier import ModelConfig
from mitotype.settings import Settings, from_dict, lazy_type, to_dict, value_range
from mitotype.training.strategies.domain_adversarial import DomainAdversarialSettings
from mitotype.training.strategies.registry import strategy_settings_type, switch_off_unnamed
from mitotype.training.strategies.soft_labels import SoftLabelSettings
from mitotype.training.strategies.supcon import SupConSettings
from mitotype.yamlio import parse_yaml_file, parse_yaml_value

PRESETS_DIR = Path(__file__).resolve().parents[1] / "configs"


DATA_READER_KEYS = ("format", "domain", "images_dir", "on_error", "columns", "labels", "meta_csv", "include")
"""The reader options a ``data.sources`` item may set for itself; left unset, it takes ``data``'s value."""


def source_name(path: str) -> str:
    """The default name of a dataset: its folder's name, or a label file's stem (``amibr``, ``midog25``)."""
    p = Path(path.rstrip("/\\")).expanduser()
    return (p.stem if p.suffix.lower() in {".csv", ".tsv", ".txt"} or p.is_file() else p.name) or "data"


@dataclass
class DataSource(Settings):
    """One dataset of a run that trains on several (an item of ``data.sources``).

    Its domains, groups (slides) and figure ids are prefixed by ``name`` (``amibr:Aperio CS2``,
    ``amibr:MIDOG21:002.tiff``), so datasets never share a domain, a slide or an id. A reader option left
    unset here takes the value ``data`` gives (e.g. ``data.domain: [scanner]`` for every dataset).
    """

    where: ClassVar[str] = "data.sources[]"
    """Where this block sits in the run configuration (named in error messages)."""

    path: str = ""
    """Dataset folder or file, read by :func:`mitotype.data.readers.read_dataset`."""
    name: str = ""
    """Prefix of this dataset's domains, groups and ids; default: the folder name or the label file's stem
    (made unique by ``-2``, ``-3``, ... when two datasets would share it)."""
    format: str | None = None
    """Reader name or ``auto``; unset = ``data.format``."""
    domain: list[str] | None = None
    """Metadata fields the domain is built from; unset = ``data.domain`` (then the reader's default)."""
    images_dir: str | None = None
    """Folder holding the images when it is not beside the label file; unset = ``data.images_dir``."""
    on_error: Literal["fail", "skip"] | None = None
    """Bad rows stop the run or are dropped and reported; unset = ``data.on_error``."""
    columns: dict[str, str] | None = None
    """Column mapping (role -> column) for ``csv``/``coords``/``votes-csv``; unset = ``data.columns``."""
    labels: dict[str, str] | None = None
    """Label value mapping (value -> ``normal``/``atypical``); unset = ``data.labels``."""
    meta_csv: str | None = None
    """Metadata CSV for the ``folder`` format; unset = ``data.meta_csv``."""
    include: dict[str, str] | None = None
    """Keep only this dataset's records whose metadata matches; unset = ``data.include``."""

    def check(self) -> None:
        if not self.path:
            raise ConfigError("data.sources: every dataset needs a path (e.g. - {path: /data/amibr})")
        if ":" in self.name:
            raise ConfigError(f"data.sources: name {self.name!r} must not contain ':' (it separates the "
                              "dataset from its domain, group and id)")


@dataclass
class DataSettings(Settings):
    """Where the figures come from, how they are read and how they are grouped.

    One dataset: ``path`` with the reader options below. Several: ``sources``, a list of datasets each
    with its own path and reader options (the options here are their defaults); ``path`` stays empty.
    """

    where: ClassVar[str] = "data"
    """Where this block sits in the run configuration (named in error messages)."""

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
    columns: dict[str, str] = field(default_factory=dict)
    """Column mapping for ``csv``/``coords``/``votes-csv``, role -> column (``{image: path_col, label: cls}``;
    roles: image, label, votes (comma-separated), group, x, y, uid, domain, scanner, tumor, lab, species,
    source); empty = the format's own columns. CLI: ``--column ROLE=COLUMN``."""
    labels: dict[str, str] = field(default_factory=dict)
    """Label value mapping, value -> ``normal``/``atypical`` (``{AMF: atypical, NMF: normal}``); empty = the
    usual words. CLI: ``--label VALUE=CLASS``."""
    meta_csv: str | None = None
    """Metadata CSV for the ``folder`` format (file name -> group and domain fields). CLI: ``--meta-csv``."""
    size_policy: SizePolicy = DEFAULT_SIZE_POLICY
    """Patches that are not 128x128: centre-crop/black-pad, resize, or reject (one policy for every dataset,
    so that one patch store holds them all). CLI: ``--size-policy``."""
    include: dict[str, str] = field(default_factory=dict)
    """Keep only records whose metadata matches, e.g. ``{benchmark_split: train}``."""
    sources: list[DataSource] = field(default_factory=list)
    """Several datasets trained on together (``[{path: /data/amibr}, {path: /data/midog25, domain:
    [scanner]}]``; CLI: ``--data A --data B``); each keeps its own domains and slides (see
    :class:`DataSource`). Empty = the one dataset in ``path``."""
    cache_dir: str | None = None
    """Where the decode-once patch store lives; default ``$MITOTYPE_CACHE`` or ``~/.cache/mitotype``."""
    val_fraction: float = field(default=0.2, metadata=value_range(0.05, 0.5))
    """Share of the training slides held out for model selection and the threshold."""

    def check(self) -> None:
        if self.path and self.sources:
            raise ConfigError("data.path and data.sources are both set: give one dataset in data.path or "
                              "several in data.sources (CLI: --data A --data B)")
        names = [s.name for s in self.sources if s.name]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"data.sources: the name(s) {twice} are given to more than one dataset")
        first: dict[tuple[str, str], str] = {}
        for source in self.sources:
            options = json.dumps(self._source_options(source), sort_keys=True, default=str)
            key = (str(Path(source.path).expanduser().resolve()), options)
            if key in first:
                also = f" (also as {first[key]})" if first[key] != source.path else ""
                raise ConfigError(f"data.sources: {source.path} is given twice{also} with the same reader options: "
                                  "its figures would train and test against themselves; give each dataset once")
            first[key] = source.path

    def reader_options(self) -> dict[str, object]:
        """The reader's own options this block sets for ``data.path`` (``read_dataset`` keyword arguments)."""
        return _reader_options(self.images_dir, self.columns, self.labels, self.meta_csv, self.size_policy)

    def _source_options(self, source: DataSource) -> dict[str, Any]:
        """The reader options of one dataset: its own where set, ``data``'s otherwise."""
        own = {key: getattr(source, key) for key in DATA_READER_KEYS}
        return {key: getattr(self, key) if value is None else value for key, value in own.items()}

    def resolved_sources(self) -> list[DataSource]:
        """The datasets of ``sources``, each with every reader option filled in (its own or ``data``'s)
        and a unique name."""
        out: list[DataSource] = []
        taken = {s.name for s in self.sources if s.name}  # a default name steps aside for a given one
        for source in self.sources:
            values = self._source_options(source)
            name = source.name
            if not name:
                base, n = source_name(source.path), 1
                name = base
                while name in taken:
                    n += 1
                    name = f"{base}-{n}"
                taken.add(name)
            out.append(DataSource(path=source.path, name=name, **values))
        return out

    def source_reader_options(self, source: DataSource) -> dict[str, object]:
        """The reader's own options of one resolved source."""
        return _reader_options(source.images_dir, source.columns, source.labels, source.meta_csv,
                               self.size_policy)

    def description(self) -> str:
        """The dataset(s) in words, for messages: the path, or the paths joined by ``+``."""
        return " + ".join(s.path for s in self.sources) if self.sources else self.path


def _reader_options(images_dir: str | None, columns: dict[str, str] | None, labels: dict[str, str] | None,
                    meta_csv: str | None, size_policy: str) -> dict[str, object]:
    options: dict[str, object] = {"size_policy": size_policy}
    if images_dir:
        options["images_dir"] = images_dir
    if columns:
        options["columns"] = dict(columns)
    if labels:
        options["labels"] = dict(labels)
    if meta_csv:
        options["meta_csv"] = meta_csv
    return options


def __getattr__(name: str) -> Any:
    if name == "StrategySettings":  # built from the strategy registry as it stands when asked for
        return strategy_settings_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _default_strategies() -> Any:
    return strategy_settings_type()()


@dataclass
class OptimSettings(Settings):
    """Optimiser, schedule and numerics."""

    where: ClassVar[str] = "optim"
    """Where this block sits in the run configuration (named in error messages)."""

    epochs: int = field(default=10, metadata=value_range(1, 10_000))
    """Training epochs (an epoch draws as many figures as the training set holds)."""
    batch_size: int = field(default=32, metadata=value_range(2, 4096))
    """Global batch size (split across processes under DDP)."""
    lr: float = field(default=1e-3, metadata=value_range(1e-7, 1.0))
    """Peak learning rate of the heads (and of everything under ``full`` fine-tuning)."""
    backbone_lr: float | None = field(default=None, metadata=value_range(0.0, 1.0))
    """Peak learning rate of adapters/backbone; ``None`` = ``lr``."""
    weight_decay: float = field(default=0.01, metadata=value_range(0.0, 1.0))
    """AdamW weight decay."""
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    """Warm-up then cosine decay, torch's one-cycle, or constant after warm-up."""
    warmup_epochs: float = field(default=1.0, metadata=value_range(0.0, 100.0))
    """Linear warm-up length for the cosine and constant schedules."""
    grad_accum: int = field(default=1, metadata=value_range(1, 1024))
    """Micro-batches accumulated per optimiser step."""
    grad_clip: float = field(default=1.0, metadata=value_range(0.0, 1e6))
    """Max gradient norm; 0 disables clipping."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """Autocast dtype; ``auto`` = bf16 on a CUDA device that has it, else fp32 (fp16 is not offered: it
    needs loss scaling, and every GPU these backbones fit on has bf16)."""
    compile: bool = False
    """Wrap the model in ``torch.compile``."""
    embedding_cache: bool = True
    """A frozen backbone (``model.adaptation: frozen``): compute each figure's embedding once, keep it on disk
    (:mod:`mitotype.models.embedding_cache`) and train the heads on it, reused across epochs, folds, heads and
    seeds. Applies only when no enabled strategy changes the images of a batch (augmentation, MixUp), and
    on a single process."""
    channels_last: bool = False
    """Train a CNN in channels-last memory layout (the model and every batch); a speed switch whose effect
    ``benchmarks/bench_cpu_training.py`` measures per machine. Numerically not bit-identical to the default."""
    eval_batch_size: int = field(default=128, metadata=value_range(1, 8192))
    """Batch size for validation and scoring passes."""
    select_metric: Literal["balanced_accuracy", "roc_auc", "last"] = "balanced_accuracy"
    """Which epoch's weights are kept: the best validation balanced accuracy (ties broken by ROC AUC), the
    best validation ROC AUC (ties by balanced accuracy; threshold-free, so less noisy on a few hundred
    validation figures), or the last epoch. Thresholds are chosen on validation in every case."""
    patience: int = field(default=0, metadata=value_range(0, 10_000))
    """Early stopping after this many epochs without a better ``select_metric``; 0 = never (and never
    with ``last``)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    weight_averaging: Literal["none", "ema", "swa"] = "none"
    """Validate, select and save averaged weights instead of one epoch's (:mod:`mitotype.training.averaging`):
    ``ema`` = an exponential moving average of the weights, updated after every optimiser step and validated
    every epoch; ``swa`` = the plain average of the end-of-epoch weights from ``swa_start`` on, validated (and
    selectable) only from then; ``none`` = off. BatchNorm statistics that train are recomputed for the
    averaged weights over the training figures before each validation (``bn_update_figures``)."""
    ema_decay: float = field(default=0.999, metadata=value_range(0.0, 1.0, hi_open=True))
    """EMA: weight of the running average at each optimiser step (``avg = decay * avg + (1 - decay) * w``);
    the average spans roughly ``1 / (1 - decay)`` steps."""
    swa_start: float = field(default=0.75, metadata=value_range(0.0, 1.0, hi_open=True))
    """SWA: the fraction of the epochs trained before averaging starts (0.75 of 12 epochs: epochs 10-12 are
    averaged; at least the last epoch always is). Pair it with ``schedule: constant`` for SWA proper."""
    bn_update_figures: int = field(default=0, metadata=value_range(0, None))
    """Training figures (the first of a seeded permutation) over which the BatchNorm statistics of the
    averaged weights are recomputed before each validation; 0 = all of them. Unused when no BatchNorm
    layer trains (ViTs, LoRA and frozen backbones keep their statistics)."""
    bn_update_views: Literal["train", "clean"] = "train"
    """What those figures look like when the statistics are recomputed: ``train`` = through the run's image
    strategies (augmentation, stain augmentation, MixUp) with a fixed seed, as the training running statistics
    saw them; ``clean`` = unaugmented. Statistics of clean figures fit the averaged weights worse than those of the
    views training saw: on unseen scanners they cost balanced accuracy and ROC AUC against the running statistics,
    training views far less (how much: docs/results.md, "Which BatchNorm statistics hold on an unseen scanner")."""

    def check(self) -> None:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise ConfigError(f"optim.device = {self.device!r}: use auto, cpu, cuda or cuda:N")


@dataclass
class TrainConfig(Settings):
    """Everything that defines a training run (each block checks its values as it is built)."""

    data: DataSettings = field(default_factory=DataSettings)
    """The figures and their grouping."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Backbone, weights, adaptation and heads."""
    optim: OptimSettings = field(default_factory=OptimSettings)
    """Optimiser, schedule and numerics."""
    strategies: Any = field(default_factory=_default_strategies, metadata=lazy_type(strategy_settings_type))
    """The domain-aware strategies: one block per registered strategy (``StrategySettings``), looked up when a
    configuration is read, so a strategy registered after this module was imported is a key too."""
    seed: int = field(default=0, metadata=value_range(0, 2**31 - 1))
    """Seed of every random draw (sampling, augmentation, MixUp, initialisation, splits)."""
    threshold: Literal["val-balanced-accuracy", "val-platt", "fixed"] = "val-balanced-accuracy"
    """How the decision thresholds (single view and TTA) are chosen on the validation scores: the one that
    maximises balanced accuracy; ``val-platt``, the score whose Platt-calibrated probability equals the
    validation prevalence (a fitted curve instead of an argmax over a few hundred figures, and the
    balanced-accuracy optimum that a change of prevalence on a new scanner does not move); or ``fixed_threshold``."""
    fixed_threshold: float = field(default=0.5, metadata=value_range(0.0, 1.0))
    """Threshold used when ``threshold: fixed``."""


# --------------------------------------------------------------------------- loading


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c``; a value already standing where a section is needed (``optim: 5``) is an error, not
    silently replaced, so the mistake is reported instead of training with defaults."""
    node = data
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"--set {dotted}=...: the key has an empty part; write it as section.key=value")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"--set {dotted}: {where} is {child!r}, not a section that could hold it")
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
    without_file = copy.deepcopy(data)
    if isinstance(source, dict):
        data = _deep_merge(data, source)
    elif source is not None:
        data = _deep_merge(data, _read_yaml(Path(source)))
    _apply_overrides(data, overrides or [])
    # every block checks its values as it is built: the backbone name, LoRA and ranges fail before any
    # data is read
    try:
        return _build(data)
    except ConfigError as exc:
        if source is None or isinstance(source, dict):
            raise
        try:  # the same error without the YAML file: the preset or a --set is at fault, and says so itself
            _build(_apply_overrides(without_file, overrides or []))
        except ConfigError as without_exc:
            if str(without_exc) == str(exc):
                raise
        raise ConfigError(f"{source}: {exc}") from None


def _build(data: dict[str, Any]) -> TrainConfig:
    """The configuration from merged plain data, once ``strategies.all: off`` has switched off every strategy
    whose switch is not set (the ``plain`` preset: one registered later, on by default, stays off there too)."""
    if "strategies" in data:
        data = {**data, "strategies": switch_off_unnamed(data["strategies"])}
    return from_dict(TrainConfig, data)


def _apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``data`` with ``key.sub=value`` overrides set in place (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.sub=value")
        key, raw = item.split("=", 1)
        value = parse_yaml_value(raw, f"--set {key.strip()}") if raw.strip() else ""
        _set_dotted(data, key.strip(), value)
    return data


ADDED_LATER: dict[str, tuple[str, ...]] = {
    "data": ("columns", "labels", "meta_csv", "size_policy", "sources"),
    "optim": ("weight_averaging", "ema_decay", "swa_start", "bn_update_figures", "bn_update_views"),
    "model": ("stain_norm",),
    "strategies": ("stain_augment",),
}
"""Settings added after runs were first fingerprinted, per block: left out while at their default, so a run
started before they existed has the same fingerprint (and resumes) under this version."""


def stable_dict(config: TrainConfig) -> dict[str, Any]:
    """The plain-data configuration without the :data:`ADDED_LATER` keys that hold their default."""
    cfg = to_dict(config)
    defaults = to_dict(TrainConfig())
    for block, keys in ADDED_LATER.items():
        for key in keys:
            if key in cfg[block] and cfg[block][key] == defaults[block][key]:
                cfg[block].pop(key)
    return cfg


def save_config(config: TrainConfig, path: Path) -> None:
    atomic_write_text(Path(path), yaml.safe_dump(to_dict(config), sort_keys=False))


__all__ = [
    "ADDED_LATER",
    "DataSettings",
    "DataSource",
    "DomainAdversarialSettings",
    "LoraSettings",
    "OptimSettings",
    "SoftLabelSettings",
    "StrategySettings",  # noqa: F822 (module __getattr__: built from the registry when asked for)
    "SupConSettings",
    "TrainConfig",
    "list_presets",
    "load_config",
    "save_config",
    "stable_dict",
    "to_dict",
]
