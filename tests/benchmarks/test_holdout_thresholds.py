"""The hold-out threshold benchmark re-scores a finished run's validation split and puts each rule on its test set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mitotype.cli.main import main as mitotype_main
from mitotype.data.readers import read_dataset
from tests.conftest import TINY_OVERRIDES, load_benchmark


@pytest.mark.slow
def test_rules_are_refitted_on_the_runs_own_validation_split(synth_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    scanners = sorted({r.meta["scanner"] for r in read_dataset(synth_dir, fmt="midog25").records})
    split = ["--split-column", "scanner", "--train-values", *scanners[:3], "--test-values", scanners[3]]
    argv = ["holdout", "--data", str(synth_dir), "--out", str(tmp_path / "work"), *split, "--recipes", "plain",
            "--seeds", "0", "--cache", str(tmp_path / "cache")]
    for item in [*TINY_OVERRIDES, "model.input_size=56", "optim.epochs=1"]:
        argv += ["--set", item]
    assert mitotype_main(argv) == 0
    run = tmp_path / "work" / "plain-seed0"

    bench = load_benchmark("holdout_thresholds")
    monkeypatch.setattr(sys, "argv", ["holdout_thresholds.py", "--run", str(run), *split, "--cache",
                                      str(tmp_path / "cache"), "--results-dir", str(tmp_path), "--name", "thr"])
    assert bench.main() == 0

    figures = json.loads((tmp_path / "thr.json").read_text())["figures"]
    scores = json.loads((run / "scores.json").read_text())
    entry = figures["runs"][str(run)]
    for view, stored_key, test_key in (("single", "threshold", "test_balanced_accuracy"),
                                       ("tta", "threshold_tta", "test_balanced_accuracy_tta")):
        rows = entry[view]
        assert set(rows) == {"stored_threshold", *bench.RULES}
        # the argmax found again on the re-scored validation split is the one the run stored, and scores the same
        assert rows["validation"]["threshold"] == pytest.approx(scores[stored_key], abs=1e-6)
        assert rows["validation"]["balanced_accuracy"] == pytest.approx(scores[test_key], abs=1e-9)
        assert rows["oracle"]["balanced_accuracy"] >= max(r["balanced_accuracy"] for k, r in rows.items()
                                                          if k not in ("stored_threshold", "oracle"))
