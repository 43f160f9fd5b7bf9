"""The configuration rejects bad settings before any training starts."""

from __future__ import annotations

import pytest

from mitotype.cli.main import main
from mitotype.errors import ConfigError
from mitotype.training.config import list_presets, load_config, save_config, to_dict


def test_defaults_validate_and_round_trip(tmp_path):
    config = load_config()
    path = tmp_path / "config.yaml"
    save_config(config, path)
    again = load_config(path)
    assert to_dict(again) == to_dict(config)


def test_overrides_are_typed():
    config = load_config(overrides=["optim.epochs=3", "strategies.mixup.alpha=0.4", "data.domain=[scanner, lab]",
                                    "strategies.supcon.enabled=false"])
    assert config.optim.epochs == 3
    assert config.strategies.mixup.alpha == pytest.approx(0.4)
    assert config.data.domain == ["scanner", "lab"]
    assert config.strategies.supcon.enabled is False


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.epoch=3", "unknown configuration key 'optim.epoch' (did you mean 'epochs'?)"),
        ("strategies.soft_labels.weight=1.5", "strategies.soft_labels.weight = 1.5 is out of range"),
        ("optim.epochs=three", "optim.epochs: expected an integer"),
        ("optim.schedule=linear", "optim.schedule: 'linear' is not one of"),
        ("strategies.mixup.enabled=maybe", "strategies.mixup.enabled: expected true/false"),
        # one way to check values: every block's ranges name the full key, open ends shown as such
        ("strategies.mixup.prob=1.5", "strategies.mixup.prob = 1.5 is out of range [0, 1]"),
        ("strategies.hard_mining.margin=0", "strategies.hard_mining.margin = 0.0 is out of range (0, 0.5]"),
        ("model.head_dropout=1.0", "model.head_dropout = 1.0 is out of range [0, 1)"),
        ("model.lora.rank=0", "model.lora.rank = 0 is out of range [1, None]"),
        ("model.adaptation=partial", "model.adaptation must be one of lora, full, frozen, got 'partial'"),
        ("strategies.augment.pad_mode=wrap", "strategies.augment.pad_mode must be one of reflection"),
        ("optim.device=gpu", "optim.device = 'gpu': use auto, cpu, cuda or cuda:N"),
        ("strategies.focal.momentum=1", "strategies.focal.momentum = 1.0 is out of range [0, 1)"),
    ],
)
def test_bad_settings_are_rejected_with_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert message in str(info.value)


def test_the_edges_of_each_range_are_accepted_as_before():
    config = load_config(overrides=["strategies.hard_mining.margin=0.5", "strategies.mixup.prob=0",
                                    "strategies.focal.momentum=0", "model.head_dropout=0", "model.input_size=32",
                                    "model.backbone=efficientnet-lite0-imagenet"])  # a CNN takes any size
    assert config.strategies.hard_mining.margin == 0.5 and config.model.input_size == 32


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("strategies:\n  mixup:\n    alfa: 0.3\n")
    with pytest.raises(ConfigError, match=r"strategies\.mixup\.alfa.*did you mean 'alpha'"):
        load_config(path)


def test_every_preset_loads():
    assert {"demo", "full", "plain"} <= set(list_presets())
    for name in list_presets():
        load_config(preset=name)


def test_cli_reports_bad_config_in_one_line(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--set", "optim.lr=-1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: optim.lr = -1")
    assert "Traceback" not in err


def test_missing_domain_field_is_rejected_before_training(shared_data, tmp_path, capsys):
    code = main(["train", "--data", str(shared_data / "amibr"), "--domain", "lab", "--out", str(tmp_path / "run"),
                 "--set", "data.cache_dir=" + str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2
    assert "domain field(s) ['lab'] not present" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("source", "overrides", "message"),
    [
        (None, ["optim=5", "optim.lr=0.1"], "--set optim.lr: optim is 5, not a section"),
        ({"optim": 5}, ["optim.device=cpu"], "--set optim.device: optim is 5, not a section"),
        (None, ["optim..epochs=3"], "the key has an empty part"),
        (None, ["=3"], "the key has an empty part"),
    ],
    ids=["set-then-key", "yaml-scalar-then-key", "double-dot", "empty-key"],
)
def test_an_override_never_silently_replaces_a_value(source, overrides, message):
    """``optim: 5`` followed by ``--set optim.lr=...`` used to drop the 5 and train with default settings."""
    with pytest.raises(ConfigError, match=message):
        load_config(source, overrides=overrides)
