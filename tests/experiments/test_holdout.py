"""The hold-out experiment from the command line, on any dataset with a field that splits it."""

from __future__ import annotations

import json

import pytest

from mitotype.cli.main import main
from mitotype.data.readers import read_dataset
from mitotype.errors import DataError
from mitotype.experiments.holdout import holdout_split, summarise
from mitotype.training.config import load_config
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


def _split_config(tmp_path, rows):
    """A CSV dataset of (label, slide, split) rows on one scanner, and the configuration that reads it."""
    from tests.data.datafactories import write_csv, write_png

    for i in range(len(rows)):
        write_png(tmp_path / f"p{i}.png", seed=i)
    table = write_csv(tmp_path / "t.csv", ["img", "cls", "slide", "split"],
                      [[f"p{i}.png", *row] for i, row in enumerate(rows)])
    return load_config({"data": {"path": str(table), "format": "csv", "domain": None,
                                 "columns": {"image": "img", "label": "cls", "group": "slide", "source": "split"},
                                 "labels": {"n": "normal", "a": "atypical"}}})


def _rows(splits_per_slide):
    return [(label, f"s{k}", split) for k, split in enumerate(splits_per_slide) for label in ("n", "a")]


def test_a_slide_on_both_sides_of_the_split_is_refused(tmp_path):
    rows = _rows(["train", "train", "test", "test"])
    rows[0] = ("n", "s0", "test")  # one figure of slide s0 on the test side
    config = _split_config(tmp_path, rows)
    with pytest.raises(DataError, match=r"t.csv: source: split leaks 1 group\(s\) \(slides\) across both sides: s0"):
        holdout_split(config, tmp_path / "cache", 0, "source")


def test_a_test_side_of_one_class_is_refused(tmp_path):
    rows = [row for row in _rows(["train", "train", "train", "test"]) if not (row[1] == "s3" and row[0] == "n")]
    with pytest.raises(DataError, match=r"every test figure \(source in \['test'\]\) is atypical"):
        holdout_split(_split_config(tmp_path, rows), tmp_path / "cache", 0, "source")


def test_figures_in_neither_side_are_counted_per_value(tmp_path):
    config = _split_config(tmp_path, _rows(["train", "train", "Train", "test", "tset", "train"]))
    split = holdout_split(config, tmp_path / "cache", 0, "source")
    assert split.left_out == {"Train": 2, "tset": 2}
    assert len(split.train_idx) + len(split.val_idx) == 6 and len(split.test_idx) == 2


def test_summarise_skips_a_figure_that_is_undefined():
    runs = [{"recipe": "plain", "seed": s, "test_balanced_accuracy": 0.7 + s / 10, "test_roc_auc": auc}
            for s, auc in ((0, None), (1, 0.8))]
    entry = summarise(runs)["plain"]
    assert entry["roc_auc_mean"] == pytest.approx(0.8) and entry["balanced_accuracy_mean"] == pytest.approx(0.75)


def test_the_ablation_over_seeds_is_set_against_the_baselines_seed_spread():
    """A strategy's mean change over seeds beats the spread only when it exceeds the baseline's sd over seeds."""
    from mitotype.experiments.holdout import ablation_means

    runs = [{"recipe": "full", "seed": s, "test_balanced_accuracy": ba} for s, ba in ((0, 0.70), (1, 0.74))]
    paired = {f"full-no_{off} seed {s}": {"seed": s, "switched_off": off, "baseline": "full",
                                         "delta_balanced_accuracy": {"delta": d}}
              for off, deltas in (("mixup", (-0.01, 0.005)), ("supcon", (-0.06, -0.05))) for s, d in enumerate(deltas)}
    out = ablation_means(paired, summarise(runs))
    floor = 0.04 / 2**0.5  # sd of 0.70 and 0.74
    assert out["mixup"]["delta_balanced_accuracy_noise_floor"] == pytest.approx(floor)
    assert out["mixup"]["delta_balanced_accuracy_mean"] == pytest.approx(-0.0025)
    assert out["mixup"]["delta_balanced_accuracy_beats_spread"] is False
    assert out["supcon"]["delta_balanced_accuracy_beats_spread"] is True
    assert "delta_balanced_accuracy_noise_floor" not in ablation_means(paired)["mixup"]  # no runs, no floor
