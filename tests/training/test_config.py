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
    ],
)
def test_bad_settings_are_rejected_with_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert message in str(info.value)


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
