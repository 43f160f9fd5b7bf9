"""Configuration numbers as a user writes them, and a key given twice (issue 20, item 2 and 7)."""

from __future__ import annotations

import pytest

from mitotype.errors import ConfigError
from mitotype.training.config import load_config


@pytest.mark.parametrize(("text", "value"), [("1e-3", 1e-3), ("5e-4", 5e-4), ("1E-3", 1e-3), ("2.5e-4", 2.5e-4),
                                             ("+1e-2", 1e-2), ("0.001", 1e-3)])
def test_scientific_notation_in_set(text, value):
    config = load_config(overrides=[f"optim.lr={text}", f"optim.weight_decay={text}"])
    assert config.optim.lr == pytest.approx(value)
    assert config.optim.weight_decay == pytest.approx(value)


def test_scientific_notation_in_a_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  weight_decay: 1E-4\n  backbone_lr: 5e-5\n")
    config = load_config(path)
    assert (config.optim.lr, config.optim.weight_decay, config.optim.backbone_lr) == pytest.approx((1e-3, 1e-4, 5e-5))


def test_strings_that_are_not_numbers_stay_strings():
    config = load_config(overrides=["data.path=1e-3x", "model.backbone=tiny-vit-reg4"])
    assert config.data.path == "1e-3x"


def test_a_number_out_of_range_is_still_refused():
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        load_config(overrides=["optim.lr=1e3"])


@pytest.mark.parametrize("text", ["optim:\n  lr: 0.1\n  lr: 0.2\n", "seed: 1\noptim:\n  epochs: 2\nseed: 2\n"])
def test_duplicate_yaml_keys_are_an_error_naming_key_and_file(tmp_path, text):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "'lr'" in message or "'seed'" in message
    assert "twice" in message


def test_a_bad_value_in_a_yaml_file_names_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  epochs: -3\nmodel:\n  backbone: efficientnet-lite0-imagenet\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: optim\.epochs = -3 is out of range"):
        load_config(path)
    # an override that fixes it wins; one that is itself wrong is named as the --set it came from
    assert load_config(path, overrides=["optim.epochs=2"]).optim.epochs == 2
    with pytest.raises(ConfigError, match=r"^optim\.lr: expected a number") as info:
        load_config(path, overrides=["optim.epochs=2", "optim.lr=abc"])
    assert "run.yaml" not in str(info.value)
    path.write_text("strategies:\n  mixupp: {enabled: true}\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: unknown configuration key 'strategies\.mixupp'"):
        load_config(path)
