"""The one list of training strategies. Adding a strategy = its module + one line here (+ its tests).

The configuration's ``strategies`` section (:data:`StrategySettings`), the ablation switches and the
resume state all come from this list; the trainer calls every strategy's hooks in this order.
"""

from __future__ import annotations

import dataclasses
from typing import Any

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

STRATEGIES: list[type[Strategy]] = [
    MixUp,
    SoftLabels,
    AdaptiveFocal,
    SupCon,
    DomainAdversarial,
    DomainSampling,
    HardMining,
    Augment,
    StainAugment,
]
"""Every strategy, in the order the trainer calls their hooks (and the configuration lists them)."""


def make_strategy_settings(strategies: list[type[Strategy]]) -> type:
    """The ``strategies`` configuration section: one settings block per strategy, named by its section."""
    fields: list[Any] = [
        (s.section, s.settings_type, dataclasses.field(default_factory=s.settings_type, metadata={"doc": s.summary}))
        for s in strategies
    ]
    cls = dataclasses.make_dataclass("StrategySettings", fields)
    cls.__module__ = "mitotype.training.config"
    cls.__doc__ = "The domain-aware strategies, each with its own settings block and switch (see the registry)."
    return cls


def strategy_switches() -> dict[str, str]:
    """Each strategy's ablation name and the override that turns it off (``mitotype ablate``)."""
    return {s.name: s.switch_path() for s in STRATEGIES}


def ablation_strategies(settings: Any | None = None) -> list[str]:
    """The strategies an ablation switches off when none are named: those on by default (a strategy that is
    off unless asked for would give a variant identical to the full run), plus those ``settings`` (a run's
    ``strategies`` section) switch on."""
    def on(strategy: type[Strategy], block: Any) -> bool:
        return bool(getattr(block, strategy.switch, True))

    return [s.name for s in STRATEGIES
            if on(s, s.settings_type()) or (settings is not None and on(s, getattr(settings, s.section)))]


def build_strategies(settings: Any, run: Any) -> list[Strategy]:
    """One instance of every registered strategy for a run, given the run's ``strategies`` section."""
    return [s(getattr(settings, s.section), run) for s in STRATEGIES]


__all__ = ["STRATEGIES", "ablation_strategies", "build_strategies", "make_strategy_settings", "strategy_switches"]
