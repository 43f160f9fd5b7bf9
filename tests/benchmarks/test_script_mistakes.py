"""A benchmark script given a wrong folder, a bad ``--set`` or a broken results file says so in one line and
exits non-zero, as the ``mitotype`` command does, before it reads any data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import load_benchmark

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / script), *map(str, args)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_finished_lodo_folds_are_checked_before_any_data(tmp_path: Path) -> None:
    common = load_benchmark("_common")
    with pytest.raises(SystemExit, match=r"nowhere: no such folder"):
        common.finished_lodo_folds(tmp_path / "nowhere")
    with pytest.raises(SystemExit, match=r"no finished leave-one-domain-out fold"):
        common.finished_lodo_folds(tmp_path)
    fold = tmp_path / "cv" / "folds" / "lodo-tupac16"
    fold.mkdir(parents=True)
    (fold / "predictions.json").write_text("[]")
    assert common.finished_lodo_folds(tmp_path) == [fold]


def test_run_script_turns_a_library_error_into_one_line(capsys) -> None:
    from mitotype.errors import ConfigError

    common = load_benchmark("_common")

    def broken() -> int:
        raise ConfigError("unknown preset 'nosuch'")

    assert common.run_script(broken) == 2
    assert capsys.readouterr().err == "error: unknown preset 'nosuch'\n"


@pytest.mark.parametrize("script", ["lodo_transfer.py", "lodo_bn_views.py"])
def test_a_work_folder_without_finished_folds_is_refused(script: str, tmp_path: Path) -> None:
    line = one_line_error(run(script, "--work", tmp_path, "--name", tmp_path / "out"))
    assert f"{tmp_path}: no finished leave-one-domain-out fold" in line
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out.json").exists()


def test_a_bad_override_is_one_line(tmp_path: Path) -> None:
    fold = tmp_path / "cv" / "folds" / "lodo-a"
    fold.mkdir(parents=True)
    (fold / "predictions.json").write_text("[]")
    line = one_line_error(run("lodo_transfer.py", "--work", tmp_path, "--set", "optim.weight_averaging=bogus"))
    assert line.startswith("error: ") and "weight_averaging" in line


def test_lodo_levers_names_a_broken_result_and_a_bad_lever(tmp_path: Path) -> None:
    broken = {"notjson.json": "{bad", "list.json": "[]", "empty.json": json.dumps(
        {"figures": {"per_domain": {}, "pooled": {"balanced_accuracy": 0.5}}})}
    expected = {"notjson.json": "not a readable JSON result", "list.json": "not an amibr_lodo.py result",
                "empty.json": "no held-out domain"}
    for name, text in broken.items():
        (tmp_path / name).write_text(text)
        line = one_line_error(run("lodo_levers.py", "--name", tmp_path / "out", "--baseline", tmp_path / name))
        assert f"{name}: {expected[name]}" in line
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"extra": {"seed": 0}, "figures": {
        "per_domain": {"A": {"balanced_accuracy": 0.7, "sensitivity": 0.6, "roc_auc": 0.8}},
        "pooled": {"balanced_accuracy": 0.7}}}))
    for spec, text in ((f"baseline={good}", "is reserved"), (f"={good}", "expected NAME=RESULT"),
                       (f"x={good},{good}", "one run per seed")):
        proc = run("lodo_levers.py", "--name", tmp_path / "out", "--baseline", good, "--lever", spec)
        assert proc.returncode == 2 and text in proc.stderr and "Traceback" not in proc.stderr
    proc = run("lodo_levers.py", "--name", tmp_path / "out", "--baseline", good, "--lever", f"x={good}",
               "--lever", f"x={good}")
    assert proc.returncode == 2 and "the name 'x' is taken" in proc.stderr
    assert not (tmp_path / "out.json").exists()
