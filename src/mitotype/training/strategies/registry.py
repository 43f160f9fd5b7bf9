"""The one list of training strategies, checked as each one joins it.

Adding a strategy = its module + ``@register_strategy`` (or one :func:`register_strategy` call) + its tests.
The configuration's ``strategies`` section, the ablation switches, the loss columns of ``metrics.jsonl`` and
the resume state all come from this list, and the trainer calls every strategy's hooks in its order.

A strategy is checked when it registers, not when a run first trips over it: its settings must be a
:class:`~mitotype.settings.Settings` dataclass (so that every ``value_range``/``one_of`` rule is enforced,
for plug-ins as for the built-ins) that builds with its defaults and has a boolean switch; its name, config
section, settings class, loss column and resume key must be free; a strategy that computes a loss term
names its column, and one that keeps state names its resume key. The settings' ``where`` (the key path in
error messages) follows from the section. The section and switch table are built when asked for, so a
strategy registered after :mod:`mitotype.training.config` was imported is a config key and a switch too.
"""

from __future__ import annotations

import dataclasses
import keyword
import re
from collections.abc import Mapping
from typing import Any

from mitotype.errors import ConfigError
from mitotype.settings import Settings
from mitotype.training.resume import RESERVED_STATE_KEYS
from mitotype.training.strategies.augment import Augment
from mitotype.training.strategies.base import Strategy
from mitotype.training.strategies.domain_adversarial import DomainAdversarial
from mitotype.training.strategies.focal import AdaptiveFocal
from mitotype.training.strategies.hard_mining import HardMining
from mitotype.training.strategies.mixup import MixUp
from mitotype.training.strategies.sampling import DomainSampling
from mitotype.training.strategies.soft_labels import SoftLabels
from mitotype.training.strategies.stain_augment import StainAugment
from mitotype.training.strategies.supcon import SupCon

ALL_SECTION = "all"
"""Not a strategy's section: ``strategies.all: off`` in a configuration switches off every strategy whose switch
it does not set itself (:func:`switch_off_unnamed`), the way the ``plain`` preset is written."""

RESERVED_COLUMNS = frozenset({"epoch", "lr", "loss", "averaged", "seconds_mining", "seconds_train",
                              "seconds_validation", "train_images_per_second"})
"""Columns of a ``metrics.jsonl`` row that the trainer writes itself (and every ``val_*`` column)."""

_NAME = re.compile(r"[a-z][a-z0-9_]*")

_registered: list[type[Strategy]] = []
_settings_cache: tuple[tuple[type[Strategy], ...], type] | None = None


def _overrides(cls: type[Strategy], hook: str) -> bool:
    return getattr(cls, hook) is not getattr(Strategy, hook)


def _check(cls: type[Strategy]) -> None:
    """Refuse ``cls`` with one line naming what is wrong (a :class:`ConfigError`)."""
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(f"register_strategy: {cls!r} is not a Strategy subclass")
    label = f"strategy {cls.__name__}"
    missing = [attr for attr in ("name", "section", "settings_type") if not hasattr(cls, attr)]
    if missing:
        raise ConfigError(f"{label}: declare {', '.join(missing)} as class attributes")
    if not (isinstance(cls.name, str) and _NAME.fullmatch(cls.name)):
        raise ConfigError(f"{label}: name {cls.name!r} must be lower-case letters, digits and '_'")
    section = cls.section
    if not (isinstance(section, str) and section.isidentifier() and not keyword.iskeyword(section)):
        raise ConfigError(f"{label}: section {section!r} must be a Python identifier (it is a configuration key)")
    if section == ALL_SECTION:
        raise ConfigError(f"{label}: section {section!r} is reserved (strategies.all: off switches every strategy off)")
    settings_type = cls.settings_type
    if not (isinstance(settings_type, type) and dataclasses.is_dataclass(settings_type)
            and issubclass(settings_type, Settings)):
        raise ConfigError(f"{label}: settings_type {getattr(settings_type, '__name__', settings_type)!r} must be a "
                          "dataclass subclassing mitotype.settings.Settings, so that its value_range and one_of "
                          "rules are checked when a configuration is read")
    for other in _registered:
        for attr, what in (("name", "name"), ("section", "section"), ("settings_type", "settings class"),
                           ("loss_name", "loss_name"), ("state_key", "state_key")):
            mine = getattr(cls, attr)
            if mine is not None and mine == getattr(other, attr):
                shown = mine.__name__ if isinstance(mine, type) else repr(mine)
                raise ConfigError(f"{label}: {what} {shown} is already registered by {other.__name__}; "
                                  "each strategy needs its own")
    if not isinstance(cls.transform_order, int):
        raise ConfigError(f"{label}: transform_order must be an integer")
    if _overrides(cls, "loss_term") and not cls.loss_name:
        raise ConfigError(f"{label}: it adds a loss term, so it needs a loss_name (its metrics.jsonl column)")
    if (_overrides(cls, "state_dict") or _overrides(cls, "load_state_dict")) and not cls.state_key:
        raise ConfigError(f"{label}: it keeps state, so it needs a state_key (its place in last_state.pt)")
    if cls.loss_name is not None and (cls.loss_name in RESERVED_COLUMNS or cls.loss_name.startswith("val_")):
        raise ConfigError(f"{label}: loss_name {cls.loss_name!r} is a column the trainer writes itself")
    if cls.state_key is not None and cls.state_key in RESERVED_STATE_KEYS:
        raise ConfigError(f"{label}: state_key {cls.state_key!r} is a key the resume state keeps for itself")
    where = f"strategies.{section}"
    own_where = vars(settings_type).get("where")
    if own_where not in (None, "", where):
        raise ConfigError(f"{label}: {settings_type.__name__}.where = {own_where!r} disagrees with its section; "
                          f"leave it out (it is derived: {where!r})")
    settings_type.where = where  # messages name the key as the configuration spells it
    try:
        try:
            defaults = settings_type()
        except (ConfigError, TypeError, ValueError) as exc:
            raise ConfigError(f"{label}: its settings must build from their defaults ({exc})") from None
        if not isinstance(getattr(defaults, cls.switch, None), bool):
            raise ConfigError(f"{label}: switch {cls.switch!r} must be a boolean field of "
                              f"{settings_type.__name__} (the setting an ablation turns off)")
    except ConfigError:  # a refused strategy leaves its settings class as it found it
        if own_where is None:
            del settings_type.where
        else:
            settings_type.where = own_where
        raise


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Add ``cls`` at the end of the hook order, after checking it (a :class:`ConfigError` names what is wrong).

    Usable as a class decorator. A second registration of a name, section, settings class, loss column or
    resume key is refused, the class itself included.
    """
    _check(cls)
    _registered.append(cls)
    return cls


def unregister_strategy(name: str) -> type[Strategy]:
    """Take the strategy called ``name`` out of the list (for tests and notebooks that registered one)."""
    for cls in _registered:
        if cls.name == name:
            _registered.remove(cls)
            return cls
    raise ConfigError(f"no registered strategy named {name!r}")


def registered_strategies() -> tuple[type[Strategy], ...]:
    """Every strategy, in the order the trainer calls their hooks (and the configuration lists them)."""
    return tuple(_registered)


def __getattr__(name: str) -> Any:
    if name == "STRATEGIES":  # read-only: strategies join through register_strategy, which checks them
        return registered_strategies()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_strategy_settings(strategies: tuple[type[Strategy], ...] | list[type[Strategy]]) -> type:
    """The ``strategies`` configuration section: one settings block per strategy, named by its section."""
    fields: list[Any] = [
        (s.section, s.settings_type, dataclasses.field(default_factory=s.settings_type, metadata={"doc": s.summary}))
        for s in strategies
    ]
    cls = dataclasses.make_dataclass("StrategySettings", fields)
    cls.__module__ = "mitotype.training.config"
    cls.__doc__ = "The domain-aware strategies, each with its own settings block and switch (see the registry)."
    return cls


def strategy_settings_type() -> type:
    """The ``strategies`` section as the registry stands now (built again only after the registry changed)."""
    global _settings_cache
    current = registered_strategies()
    if _settings_cache is None or _settings_cache[0] != current:
        _settings_cache = (current, make_strategy_settings(current))
    return _settings_cache[1]


def strategy_switches() -> dict[str, str]:
    """Each strategy's ablation name and the override that turns it off (``mitotype ablate``)."""
    return {s.name: s.switch_path() for s in _registered}


def switch_off_unnamed(section: Any) -> Any:
    """The ``strategies`` section of a configuration being read, with ``all: off`` applied: every strategy whose
    switch the section does not set is switched off, those registered later included. Without ``all`` the
    section is returned as it is."""
    if not isinstance(section, dict) or ALL_SECTION not in section:
        return section
    rest = {k: v for k, v in section.items() if k != ALL_SECTION}
    if section[ALL_SECTION] not in (False, "off"):
        raise ConfigError(f"strategies.{ALL_SECTION} = {section[ALL_SECTION]!r}: only 'off' is understood (every "
                          "strategy whose switch is not set here is off)")
    for s in _registered:
        block = rest.get(s.section)
        if block is None:
            rest[s.section] = {s.switch: False}
        elif isinstance(block, dict) and s.switch not in block:
            rest[s.section] = {**block, s.switch: False}
    return rest


def ablation_strategies(settings: Any | None = None) -> list[str]:
    """The strategies an ablation switches off when none are named: those on by default (a strategy that is
    off unless asked for would give a variant identical to the full run), plus those ``settings`` (a run's
    ``strategies`` section) switch on."""
    def on(strategy: type[Strategy], block: Any) -> bool:
        return bool(getattr(block, strategy.switch, True))

    return [s.name for s in _registered
            if on(s, s.settings_type()) or (settings is not None and on(s, getattr(settings, s.section)))]


def switched_on(section: Mapping[str, Any]) -> list[str]:
    """The strategies a run's stored ``strategies`` section (plain data, e.g. a model's ``model.json``) switches
    on, in hook order; a block it lacks counts as its strategy's default."""
    out = []
    for s in _registered:
        block = section.get(s.section)
        value = block.get(s.switch) if isinstance(block, Mapping) else None
        if value if value is not None else getattr(s.settings_type(), s.switch):
            out.append(s.name)
    return out


def build_strategies(settings: Any, context: Any) -> list[Strategy]:
    """One instance of every registered strategy for a run, given the run's ``strategies`` section and the
    :class:`~mitotype.training.strategies.base.RunContext` they read."""
    return [s(getattr(settings, s.section), context) for s in _registered]


for _builtin in (MixUp, SoftLabels, AdaptiveFocal, SupCon, DomainAdversarial, DomainSampling, HardMining, Augment,
                 StainAugment):
    register_strategy(_builtin)

__all__ = ["ALL_SECTION", "RESERVED_COLUMNS", "STRATEGIES", "ablation_strategies", "build_strategies",  # noqa: F822
           "make_strategy_settings", "register_strategy", "registered_strategies", "strategy_settings_type",
           "strategy_switches", "switch_off_unnamed", "switched_on", "unregister_strategy"]
