"""The hold-out experiment from the command line, on any dataset with a field that splits it."""

from __future__ import annotations

import json

import pytest

from mitotype.cli.main import main
from mitotype.data.readers import read_dataset
from tests.conftest import TINY_OVERRIDES


@pytest.mark.slow
def test_holdout_trains_recipes_scores_the_held_out_split_and_pairs_the_ablation(synth_dir, tmp_path, capsys):
    scanners = sorted({r.meta["scanner"] for r in read_dataset(synth_dir, fmt="midog25").records})
    overrides = [*TINY_OVERRIDES, "model.input_size=56", "optim.epochs=1", "optim.schedule=cosine"]
    argv = ["holdout", "--data", str(synth_dir), "--out", str(tmp_path / "work"), "--split-column", "scanner",
            "--train-values", *scanners[:3], "--test-values", scanners[3], "--recipes", "plain",
            "--ablate", "plain", "--strategies", "augment", "--seeds", "0",
            "--cache", str(tmp_path / "cache")]
    for item in overrides:
        argv += ["--set", item]
    assert main(argv) == 0
    results = json.loads((tmp_path / "work" / "holdout.json").read_text())
    assert [(r["recipe"], r["seed"]) for r in results["runs"]] == [("plain", 0), ("plain-no_augment", 0)]
    run = results["runs"][0]
    assert run["n_test"] == 24 and 0.0 <= run["test_balanced_accuracy"] <= 1.0 and "threshold_tta" in run
    assert (tmp_path / "work" / "plain-seed0" / "test_predictions.csv").is_file()
    assert results["ablation"]["plain-no_augment seed 0"]["switched_off"] == "augment"
    assert "plain" in results["summary"] and results["seed_ensembles"] == {}  # one seed: no ensemble
    assert "holdout.json" in capsys.readouterr().out
    # a second call finds both runs done and trains nothing
    assert main(argv) == 0
    assert len(json.loads((tmp_path / "work" / "holdout.json").read_text())["runs"]) == 2
