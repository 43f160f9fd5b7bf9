"""A device name torch would choke on is refused in one line before anything is loaded."""

from __future__ import annotations

import pytest
import torch

from mitotype.cli.main import main
from mitotype.errors import ConfigError
from mitotype.models.device import resolve_device


@pytest.mark.parametrize("name", ["gpu0", "cpux", "cuda0", "CUDA", "cuda:-1", ""])
def test_unknown_device_names_are_refused(name):
    with pytest.raises(ConfigError, match="use auto, cpu, cuda"):
        resolve_device(name)


def test_a_cuda_index_the_machine_lacks_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match="1 CUDA device"):
        resolve_device("cuda:7")


def test_mps_without_an_apple_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="mps"):
        resolve_device("mps")


def test_predict_with_a_misspelt_device_is_one_line(tmp_path, capsys):
    out = tmp_path / "p.csv"
    code = main(["predict", str(tmp_path), "--model", str(tmp_path), "--out", str(out), "--device", "gpu0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("error: device 'gpu0' is not one this tool knows; use auto, cpu, cuda, "
                                            "cuda:N or mps")
    assert not out.exists()
