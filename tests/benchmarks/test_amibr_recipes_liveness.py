"""The recipe sweep shows each run's log as it comes and records a run killed from outside (issue 20, 8)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

FAKE_RUN = """
import os, signal, sys, time
print("  [plain seed 0] epoch 1/4 loss 0.5", flush=True)
time.sleep(1.5)
print("some last words", file=sys.stderr, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def recipes(monkeypatch, tmp_path) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("amibr_recipes_live", BENCHMARKS / "amibr_recipes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fake = tmp_path / "fake_run.py"
    fake.write_text(FAKE_RUN)
    monkeypatch.setattr(module, "__file__", str(fake))  # the child command runs this script
    return module


class StampedOut:
    """A stdout that remembers when each text arrived."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.writes.append((time.monotonic(), text))
        return len(text)

    def flush(self) -> None:
        pass


def _args(tmp_path: Path) -> argparse.Namespace:
    return argparse.Namespace(work=tmp_path / "work", epochs=None, set=[], jobs=1, budget=None)


def test_a_run_log_is_shown_while_the_run_is_going(recipes, tmp_path, monkeypatch):
    out = StampedOut()
    monkeypatch.setattr(sys, "stdout", out)
    start = time.monotonic()
    recipes.child(_args(tmp_path), "--train-one", "plain", 0)
    end = time.monotonic()
    first = next(t for t, text in out.writes if "epoch 1/4" in text)
    assert end - start >= 1.4
    assert first - start < end - start - 1.0  # seen well before the run ended


def test_a_run_killed_from_outside_is_recorded_as_failed(recipes, tmp_path, capsys):
    runs: list[dict] = []
    failures: list[dict] = []
    saved: list[list[dict]] = []
    code = recipes.run_queue(_args(tmp_path), [("plain", 0)], runs, lambda: saved.append(list(failures)),
                             failures)
    assert code == 1 and runs == []
    assert len(failures) == 1 and failures[0]["recipe"] == "plain" and failures[0]["seed"] == 0
    assert "signal 9" in failures[0]["failed"] and "some last words" in failures[0]["failed"]
    assert saved and saved[-1] == failures  # written to the results file at once
    assert "FAILED" in capsys.readouterr().err
