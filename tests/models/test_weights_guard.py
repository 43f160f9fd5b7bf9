"""Weights that are empty, non-finite or need code are refused with a one-line error (issue 20, 3, 5, 6)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mitotype.cli.main import main
from mitotype.errors import WeightsError
from mitotype.models.registry import get_backbone_spec
from mitotype.models.weights import build_backbone, check_weights, read_state_dict

SPEC = get_backbone_spec("tiny-vit-reg4")
_RAN: list[str] = []


def _ran(tag: str) -> str:
    _RAN.append(tag)
    return tag


class RunsCode:
    """Unpickling it would call a function of this module (recorded in ``_RAN``)."""

    def __reduce__(self) -> tuple:
        return (_ran, ("code ran",))


class CallsStdlib:
    """Unpickling it would call a standard-library function (harmless here: ``os.getpid``)."""

    def __reduce__(self) -> tuple:
        return (os.getpid, ())


def _poisoned(tiny_vit_weights: Path, out: Path, value: float) -> Path:
    state = read_state_dict(tiny_vit_weights)
    key = sorted(state)[3]
    state[key] = state[key].clone()
    state[key].view(-1)[0] = value
    if out.suffix == ".safetensors":
        save_file(state, str(out))
    else:
        torch.save(state, out)
    return out


def _one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ")
    return lines[-1]


@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".bin"])
def test_zero_byte_weights_are_a_clear_error(tmp_path, capsys, suffix):
    path = tmp_path / f"zero{suffix}"
    path.write_bytes(b"")
    line = _one_line_error(capsys, ["models", "check", "tiny-vit-reg4", "--weights", str(path)])
    assert str(path) in line and "empty" in line


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_by_check_and_load(tiny_vit_weights, tmp_path, capsys, suffix, value):
    path = _poisoned(tiny_vit_weights, tmp_path / f"bad{suffix}", value)
    line = _one_line_error(capsys, ["models", "check", "tiny-vit-reg4", "--weights", str(path)])
    assert str(path) in line and "NaN or infinite" in line
    with pytest.raises(WeightsError, match="NaN or infinite"):
        check_weights(SPEC, str(path))
    with pytest.raises(WeightsError, match="NaN or infinite"):
        build_backbone(SPEC, str(path))


def test_finite_weights_still_check_ok(tiny_vit_weights, capsys):
    assert main(["models", "check", "tiny-vit-reg4", "--weights", str(tiny_vit_weights)]) == 0
    assert "ok, loads strictly" in capsys.readouterr().out


@pytest.mark.parametrize(("payload", "name"), [(RunsCode, "_ran"), (CallsStdlib, "getpid")])
@pytest.mark.parametrize("legacy", [False, True])
def test_pickle_needing_code_is_refused_by_inspection(tmp_path, capsys, legacy, payload, name):
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(2), "extra": payload()}, path, _use_new_zipfile_serialization=not legacy)
    _RAN.clear()
    line = _one_line_error(capsys, ["models", "check", "tiny-vit-reg4", "--weights", str(path)])
    assert "needs code" in line and name in line and str(path) in line
    assert "weights_only" not in line  # torch's advice to unpickle it anyway is never passed on
    assert _RAN == []


def test_a_plain_pickle_of_code_is_refused_without_running_it(tmp_path, capsys):
    path = tmp_path / "plain.pkl.pt"
    path.write_bytes(pickle.dumps({"w": RunsCode()}))
    _RAN.clear()
    line = _one_line_error(capsys, ["models", "check", "tiny-vit-reg4", "--weights", str(path)])
    assert str(path) in line
    assert _RAN == []
