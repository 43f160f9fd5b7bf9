"""tools/container-test: the challenge container built here without a registry and run as the platform runs it.

The end-to-end test needs podman (run as root), which CI does not have: it skips there, saying so. Where it runs,
the script reuses an image built from these very sources (``--reuse``: no build, save or load), so only the runs,
the fold ensemble trained outside and the comparisons take time. The tests of how a build step is given the host's
pip configuration run everywhere.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "tools" / "container-test"


def _load_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("container_test", str(SCRIPT))
    spec = importlib.util.spec_from_loader("container_test", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _why_no_podman() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed: tools/container-test builds and runs the challenge container where it is"
    if os.geteuid() != 0:
        return "not root: tools/container-test runs podman rootful (run it, or these tests, as root)"
    return None


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """The script as a module, reading pip configuration from ``tmp_path`` alone (no host files, no PIP_*)."""
    module = _load_script()
    for name in list(os.environ):
        if name.startswith("PIP_") or name in ("VIRTUAL_ENV", "XDG_CONFIG_HOME"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "xdg"))
    monkeypatch.setattr(module, "SYSTEM_PIP_CONF", tmp_path / "etc-pip.conf")
    return module


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_build_step_sees_the_hosts_effective_pip_configuration(script: ModuleType, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    wheels = (tmp_path / "wheels").resolve()
    index = (tmp_path / "pypi" / "simple").resolve()
    index.mkdir(parents=True)
    wheels.mkdir()
    constraints = _write(tmp_path / "xdg" / "pip" / "constraints.txt", "torch<=2.14.1\n")
    _write(tmp_path / "xdg" / "pip" / "pip.conf", f"[global]\nconstraint = {constraints}\ntimeout = 10\n")
    _write(tmp_path / "etc-pip.conf", "[global]\ntimeout = 20\n[install]\nfind-links = /nowhere\n")
    _write(tmp_path / "home" / ".config" / "pip" / "pip.conf",
           f"[global]\nextra-index-url = file://{index} https://example.org/simple\n")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_TARGET", "/somewhere/else")  # would move the install inside the build: left out

    config = script.host_pip_config()
    assert config.get("global", "timeout") == "20"  # /etc/pip.conf after the XDG file, as pip reads them
    assert config.get("global", "find-links") == str(wheels)
    assert config.get("install", "find-links") == str(wheels)  # the environment beats every section
    assert not config.has_option("global", "target")
    # a PEP 503 file index is mounted with the files beside it; URLs and missing paths are not mounted
    assert script.local_paths(config) == sorted([constraints.resolve(), index.parent, wheels])

    state = tmp_path / "state"
    state.mkdir()
    options, mounted = script.build_mounts(state)
    assert options[:2] == ["-v", f"{state / 'pip-build.conf'}:/etc/pip.conf:ro"]
    assert all(option.endswith(":ro") for option in options[1::2])
    assert mounted == [str(p) for p in sorted([constraints.resolve(), index.parent, wheels])]
    written = (state / "pip-build.conf").read_text()
    assert f"find-links = {wheels}" in written and "/somewhere/else" not in written


def test_the_torch_variant_pins_the_newest_cpu_wheel_of_the_wheel_folders(script: ModuleType, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in ("torch-2.9.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
                 "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
                 "torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl"):  # a CUDA build: never taken
        (wheels / name).touch()
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    assert script.cpu_torch_requirement(script.host_pip_config()) == "torch==2.13.0+cpu"
    (wheels / "torchvision-0.28.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    assert script.cpu_torch_requirement(script.host_pip_config()) == "torch==2.13.0+cpu torchvision==0.28.0+cpu"
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    with pytest.raises(script.Failure, match="no CPU torch wheel"):
        script.cpu_torch_requirement(script.host_pip_config())


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.skipif(_why_no_podman() is not None, reason=_why_no_podman() or "")
def test_the_container_runs_as_the_platform_runs_it_and_writes_what_challenge_writes_outside(
        shared_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "container.json"
    env = {**os.environ, "MITOTYPE_SHARED_DATA": str(shared_data)}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reuse", "--repeats", "1", "--work", str(tmp_path / "work"),
                           "--results", str(results)], capture_output=True, text=True, env=env, timeout=3600)
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-4000:])
    figures = json.loads(results.read_text())["figures"]
    image = figures["image"]
    assert image["uid"] != 0 and image["user"] not in ("", "root")
    assert image["modules"] == {"torch": False, "onnxruntime": True, "timm": False}
    assert image["build_mounts_left_in_image"] == []
    for model in ("shipped_model", "ensemble_model"):
        assert figures[model]["figures"] == 16
        assert figures[model]["equal_to_outside"] is True
        assert figures[model]["max_abs_confidence_diff"] <= 1e-5
    assert figures["ensemble_model"]["members"] == 2
    for scores in figures["score_hand_made_truth"].values():
        assert 0.0 <= scores["balanced_accuracy"] <= 1.0 and 0.0 <= scores["roc_auc"] <= 1.0
