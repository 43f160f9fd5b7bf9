"""``mitotype models list`` and ``mitotype models check`` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mitotype.cli.main import main
from mitotype.models.weights import read_state_dict


def test_models_list_shows_sizes_normalisation_and_parameter_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("h-optimus-0 "))
    assert (
        "224" in line
        and "(0.707223, 0.578729, 0.703617)" in line
        and "(0.211883, 0.230117, 0.177517)" in line
    )
    assert "1536" in line and "1,134,774,272" in line and "hf-hub:bioptimus/H-optimus-0" in line
    virchow = next(row for row in out.splitlines() if row.startswith("virchow2 "))
    assert "2560" in virchow and "cls+mean" in virchow and "631,239,424" in virchow
    assert "tiny-vit-reg4 (test)" in out


def test_models_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in listing["backbones"]}
    assert isinstance(listing["shipped_models"], list)
    assert rows["uni2-h"]["parameters"] == 681_394_176
    assert rows["efficientnet-lite0-imagenet"]["mean"] == [0.5, 0.5, 0.5]


def test_models_check_ok(tiny_vit_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "check", "tiny-vit-reg4", "--weights", str(tiny_vit_weights)]) == 0
    out = capsys.readouterr().out
    assert "tensors: 35 (35 float32)" in out
    assert "parameters (model): 45,140" in out
    assert "missing keys: 0" in out and "unexpected keys: 0" in out
    assert "result: ok, loads strictly" in out


def test_models_check_mismatch_fails_unless_no_strict(
    tmp_path: Path, tiny_vit_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = read_state_dict(tiny_vit_weights)
    state["extra.weight"] = torch.zeros(2)
    del state["norm.bias"]
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    assert main(["models", "check", "tiny-vit-reg4", "--weights", str(path)]) == 2
    captured = capsys.readouterr()
    assert (
        "missing keys: 1 (norm.bias)" in captured.out and "unexpected keys: 1 (extra.weight)" in captured.out
    )
    assert captured.err.startswith("error: tiny-vit-reg4: weights do not match")
    assert main(["models", "check", "tiny-vit-reg4", "--weights", str(path), "--no-strict"]) == 0
    assert "result: loads non-strictly" in capsys.readouterr().out


def test_models_check_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "check", "virchow2"]) == 2  # offline, empty cache (conftest)
    err = capsys.readouterr().err
    assert err.startswith("error: virchow2: no weights found") and "paige-ai/Virchow2" in err
    assert main(["models", "check", "nope", "--weights", str(tmp_path)]) == 2
    assert "unknown backbone 'nope'" in capsys.readouterr().err
    assert main(["models", "check", "tiny-vit-reg4", "--weights", str(tmp_path / "missing.pt")]) == 2
    assert "not found" in capsys.readouterr().err
