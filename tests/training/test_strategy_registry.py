"""The strategy registry checks a strategy when it registers: its settings type and ranges, names and keys
that must be free, the key path of its messages; the config section and switch table follow the registry as
it stands, and ``plain`` switches every strategy off without naming it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from mitotype.errors import ConfigError
from mitotype.settings import Settings, to_dict, value_range
from mitotype.training import config as config_module
from mitotype.training.config import PRESETS_DIR, TrainConfig, load_config
from mitotype.training.sampler import SamplingSettings
from mitotype.training.strategies import registry
from mitotype.training.strategies.base import Strategy
from mitotype.training.strategies.registry import register_strategy, strategy_switches, unregister_strategy
from tests.training.test_strategies import LogitPenalty, LogitPenaltySettings

Penalty = LogitPenalty
"""A plug-in strategy, on by default, with a loss term and state (the one ``test_strategies`` trains)."""


@pytest.fixture
def plugged() -> Iterator[type[Strategy]]:
    """``LogitPenalty`` registered for one test (after training.config was imported), and taken out again."""
    register_strategy(Penalty)
    try:
        yield Penalty
    finally:
        unregister_strategy("logit_penalty")


def variant(**attrs: Any) -> type[Strategy]:
    """A subclass of ``Penalty`` with other class attributes (a second plug-in)."""
    return type("Variant", (Penalty,), {"name": "variant", "section": "variant", "loss_name": "variant",
                                        "state_key": "variant", "settings_type": make_settings(), **attrs})


def make_settings(**fields: Any) -> type:
    """A fresh Settings dataclass (each registered strategy needs its own settings class)."""
    return dataclasses.make_dataclass("VariantSettings", [("enabled", bool, True),
                                                          *((k, *v) for k, v in fields.items())], bases=(Settings,))


def test_a_plugin_registered_after_the_config_module_is_a_key_and_a_switch(plugged) -> None:
    config = load_config(overrides=["strategies.logit_penalty.weight=0.5"])
    assert config.strategies.logit_penalty.weight == 0.5
    assert to_dict(TrainConfig())["strategies"]["logit_penalty"] == {"enabled": True, "weight": 0.01}
    assert [f.name for f in dataclasses.fields(config_module.StrategySettings)][-1] == "logit_penalty"
    assert strategy_switches()["logit_penalty"] == "strategies.logit_penalty.enabled"
    from mitotype.experiments import cv

    assert cv.STRATEGY_SWITCHES["logit_penalty"] == "strategies.logit_penalty.enabled"
    assert registry.STRATEGIES[-1] is Penalty


def test_taken_out_again_it_is_neither(plugged) -> None:
    unregister_strategy("logit_penalty")
    with pytest.raises(ConfigError, match=r"unknown configuration key 'strategies\.logit_penalty'"):
        load_config(overrides=["strategies.logit_penalty.weight=0.5"])
    assert "logit_penalty" not in strategy_switches()
    register_strategy(Penalty)  # for the fixture to take out


@pytest.mark.parametrize("where", ["override", "yaml"])
def test_a_plugins_out_of_range_setting_is_refused_when_the_config_is_read(plugged, tmp_path, where) -> None:
    message = r"strategies\.logit_penalty\.weight = 5\.0 is out of range \[0\.0, 1\.0\]"
    with pytest.raises(ConfigError, match=message):
        if where == "override":
            load_config(overrides=["strategies.logit_penalty.weight=5"])
        else:
            path = tmp_path / "run.yaml"
            path.write_text(yaml.safe_dump({"strategies": {"logit_penalty": {"weight": 5.0}}}))
            load_config(path)


def test_a_plain_dataclass_as_settings_is_refused_at_registration() -> None:
    @dataclass
    class Loose:
        enabled: bool = True
        weight: float = field(default=5.0, metadata=value_range(0.0, 1.0))  # never checked without Settings

    with pytest.raises(ConfigError, match=r"must be a dataclass subclassing mitotype\.settings\.Settings"):
        register_strategy(variant(settings_type=Loose))
    assert "variant" not in strategy_switches()


def test_settings_that_do_not_build_from_their_defaults_are_refused() -> None:
    bad = make_settings(weight=(float, field(default=5.0, metadata=value_range(0.0, 1.0))))
    with pytest.raises(ConfigError, match=r"strategy Variant: its settings must build from their defaults.*"
                                          r"strategies\.variant\.weight = 5\.0 is out of range"):
        register_strategy(variant(settings_type=bad))
    assert "where" not in vars(bad)  # a refused strategy leaves its settings class as it found it


@pytest.mark.parametrize(("attr", "value", "what"), [
    ("name", "logit_penalty", "name 'logit_penalty'"),
    ("section", "logit_penalty", "section 'logit_penalty'"),
    ("loss_name", "logit_l2", "loss_name 'logit_l2'"),
    ("state_key", "logit_penalty", "state_key 'logit_penalty'"),
    ("settings_type", LogitPenaltySettings, "settings class LogitPenaltySettings"),
    ("loss_name", "cls", "loss_name 'cls'"),      # a built-in's (adaptive focal)
    ("state_key", "miner", "state_key 'miner'"),  # a built-in's (hard mining)
])
def test_a_second_registration_of_a_name_key_or_loss_is_refused(plugged, attr, value, what) -> None:
    with pytest.raises(ConfigError, match=f"{what} is already registered by"):
        register_strategy(variant(**{attr: value}))
    assert "variant" not in strategy_switches()


def test_the_same_class_twice_is_refused(plugged) -> None:
    with pytest.raises(ConfigError, match="name 'logit_penalty' is already registered by LogitPenalty"):
        register_strategy(Penalty)
    assert list(strategy_switches()).count("logit_penalty") == 1


@pytest.mark.parametrize(("attrs", "message"), [
    ({"loss_name": "loss"}, "loss_name 'loss' is a column the trainer writes itself"),
    ({"loss_name": "val_auc"}, "loss_name 'val_auc' is a column the trainer writes itself"),
    ({"state_key": "history"}, "state_key 'history' is a key the resume state keeps for itself"),
    ({"state_key": "weight_averaging"}, "state_key 'weight_averaging' is a key the resume state keeps"),
    ({"loss_name": None}, "it adds a loss term, so it needs a loss_name"),
    ({"state_key": None}, "it keeps state, so it needs a state_key"),
    ({"section": "all"}, "section 'all' is reserved"),
    ({"section": "not a key"}, "section 'not a key' must be a Python identifier"),
    ({"name": "Bad-Name"}, "name 'Bad-Name' must be lower-case"),
    ({"switch": "weight"}, "switch 'weight' must be a boolean field"),
])
def test_what_would_collide_or_go_unsaved_is_refused(attrs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        register_strategy(variant(**attrs))
    assert "variant" not in strategy_switches()


def test_where_follows_from_the_section() -> None:
    assert SamplingSettings.where == "strategies.sampling"  # the built-ins' too: nobody keeps it in step by hand
    settings = make_settings(weight=(float, field(default=0.1, metadata=value_range(0.0, 1.0))))
    cls = variant(settings_type=settings)
    register_strategy(cls)
    try:
        assert settings.where == "strategies.variant"
        with pytest.raises(ConfigError, match=r"^strategies\.variant\.weight = 2\.0 is out of range"):
            settings(weight=2.0)
    finally:
        unregister_strategy("variant")
    wrong = make_settings()
    wrong.where = "strategies.elsewhere"
    with pytest.raises(ConfigError, match="disagrees with its section"):
        register_strategy(variant(settings_type=wrong))


def test_the_list_is_read_only() -> None:
    with pytest.raises(AttributeError):
        registry.STRATEGIES.append(Penalty)  # type: ignore[attr-defined]


def test_plain_switches_every_strategy_off_without_naming_it(plugged) -> None:
    text = (PRESETS_DIR / "plain.yaml").read_text()
    strategies = yaml.safe_load(text)["strategies"]
    assert strategies["all"] is False and set(strategies) == {"all", "focal", "sampling", "augment"}
    plain = load_config(preset="plain")
    assert plain.strategies.logit_penalty.enabled is False  # on by default, registered later: still off in plain
    on = {s.name for s in registry.STRATEGIES if getattr(getattr(plain.strategies, s.section), s.switch)}
    assert on == {"domain_sampling", "augment"}  # the two plain names and switches on itself
    assert load_config(preset="full-cpu").strategies.logit_penalty.enabled is True
    # a switch given explicitly wins over 'all: off'
    again = load_config(preset="plain", overrides=["strategies.logit_penalty.enabled=true"])
    assert again.strategies.logit_penalty.enabled


def test_plain_is_the_configuration_it_was_when_it_named_every_strategy() -> None:
    """The recipe is unchanged (its runs keep their fingerprint): 'all: off' gives what naming each one gave."""
    explicit = yaml.safe_load((PRESETS_DIR / "plain.yaml").read_text())
    explicit["strategies"].pop("all")
    explicit["strategies"].update({"mixup": {"enabled": False}, "soft_labels": {"enabled": False},
                                   "supcon": {"enabled": False}, "domain_adversarial": {"enabled": False},
                                   "hard_mining": {"enabled": False}})
    explicit["strategies"]["focal"]["adaptive"] = False
    assert to_dict(load_config(preset="plain")) == to_dict(load_config(explicit))


def test_all_takes_only_off() -> None:
    with pytest.raises(ConfigError, match=r"strategies\.all = True: only 'off' is understood"):
        load_config(overrides=["strategies.all=true"])
    assert not load_config(overrides=["strategies.all=off"]).strategies.mixup.enabled
