"""The recipe benchmark's bookkeeping (its tables are :mod:`mitotype.experiments.holdout`'s): ablation
recipes are the preset with one switch off, and the ablation pairs each variant with the full recipe of
the same seed on the same test figures."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from mitotype.errors import ConfigError
from mitotype.experiments import holdout
from tests.conftest import BENCHMARKS, load_benchmark


@pytest.fixture(scope="module")
def recipes() -> ModuleType:
    return load_benchmark("amibr_recipes")


def test_recipe_config_switches_one_strategy_off(recipes: ModuleType) -> None:
    full = recipes.recipe_config("full-cpu", seed=3, epochs=None)
    variant = recipes.recipe_config("full-cpu-no_mixup", seed=3, epochs=2)
    assert full.strategies.mixup.enabled and not variant.strategies.mixup.enabled
    assert variant.strategies.supcon.enabled == full.strategies.supcon.enabled
    assert variant.seed == 3 and variant.optim.epochs == 2 and full.optim.epochs == 12
    focal = recipes.recipe_config("full-cpu-no_adaptive_focal", seed=0, epochs=None)
    assert not focal.strategies.focal.adaptive and focal.strategies.focal.gamma == full.strategies.focal.gamma
    with pytest.raises(ConfigError, match="unknown strategy 'dropout'"):
        recipes.recipe_config("full-cpu-no_dropout", seed=0, epochs=None)


def _write_run(work: Path, recipe: str, seed: int, labels: list[int], scores: list[float]) -> None:
    out = work / f"{recipe}-seed{seed}"
    out.mkdir(parents=True)
    (out / "scores.json").write_text(json.dumps({"threshold": 0.5, "threshold_tta": 0.5}))
    with (out / "test_predictions.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["uid", "dataset", "group", "label", "p_atypical", "p_atypical_tta"])
        for i, (y, p) in enumerate(zip(labels, scores)):
            writer.writerow([f"f{i}", "d", f"slide{i % 10}", y, p, p])


def test_ablation_pairs_variant_with_same_seed_full_run(recipes: ModuleType, tmp_path: Path) -> None:
    labels = [0, 1] * 20
    _write_run(tmp_path, "full-cpu", 0, labels, [0.9 if y else 0.1 for y in labels])  # perfect
    wrong = [0.9 if (y or i < 10) else 0.1 for i, y in enumerate(labels)]  # 5 normals called atypical
    _write_run(tmp_path, "full-cpu-no_mixup", 0, labels, wrong)
    runs = [
        {"recipe": "full-cpu", "seed": 0, "test_roc_auc": 1.0, "test_roc_auc_tta": 1.0},
        {"recipe": "full-cpu-no_mixup", "seed": 0, "test_roc_auc": 0.9, "test_roc_auc_tta": 0.95},
        {"recipe": "full-cpu-no_supcon", "seed": 1, "test_roc_auc": 0.9, "test_roc_auc_tta": 0.9},  # no seed-1 base
    ]
    runs_without_tta = [{k: v for k, v in r.items() if not k.endswith("_tta")} for r in runs]
    assert "delta_roc_auc_tta" not in holdout.ablation(runs_without_tta, tmp_path)["full-cpu-no_mixup seed 0"]
    out = holdout.ablation(runs, tmp_path)
    assert list(out) == ["full-cpu-no_mixup seed 0"]
    entry = out["full-cpu-no_mixup seed 0"]
    assert entry["switched_off"] == "mixup"
    # specificity 15/20 instead of 20/20: balanced accuracy falls by 0.125
    assert entry["delta_balanced_accuracy"]["delta"] == pytest.approx(-0.125)
    assert entry["delta_balanced_accuracy"]["ci_high"] <= 0
    assert entry["delta_roc_auc"] == pytest.approx(-0.1) and entry["delta_roc_auc_tta"] == pytest.approx(-0.05)


def test_summary_reports_tta_figures_when_present(recipes: ModuleType) -> None:
    runs = [{"recipe": "plain", "seed": s, "test_balanced_accuracy": 0.7 + s / 100, "test_roc_auc": 0.8,
             "test_balanced_accuracy_tta": 0.75, "test_roc_auc_tta": 0.85} for s in range(3)]
    runs.append({"recipe": "old", "seed": 0, "test_balanced_accuracy": 0.6, "test_roc_auc": 0.7})
    summary = holdout.summarise(runs)
    assert summary["plain"]["balanced_accuracy_mean"] == pytest.approx(0.71)
    assert summary["plain"]["balanced_accuracy_sd"] == pytest.approx(0.01)
    assert summary["plain"]["roc_auc_tta_mean"] == pytest.approx(0.85)
    assert "balanced_accuracy_tta_mean" not in summary["old"] and summary["old"]["balanced_accuracy_sd"] is None


def test_seed_ensemble_averages_probabilities_and_thresholds(recipes: ModuleType, tmp_path: Path) -> None:
    labels = [0, 0, 1, 1]
    _write_run(tmp_path, "plain", 0, labels, [0.2, 0.6, 0.7, 0.4])  # one error each way
    _write_run(tmp_path, "plain", 1, labels, [0.2, 0.3, 0.9, 0.55])  # mean 0.2 0.45 0.8 0.475: ranked right
    runs = [{"recipe": "plain", "seed": s, "threshold": 0.5, "threshold_tta": 0.4} for s in (0, 1)]
    runs.append({"recipe": "full-cpu", "seed": 0, "threshold": 0.5, "threshold_tta": 0.5})  # one seed: none
    out = holdout.ensembles(runs, tmp_path)
    assert list(out) == ["plain"]
    assert out["plain"]["seeds"] == [0, 1]
    assert out["plain"]["balanced_accuracy"] == pytest.approx(0.75)  # at 0.5: 0.475 is called normal
    assert out["plain"]["threshold_tta"] == pytest.approx(0.4)
    assert out["plain"]["balanced_accuracy_tta"] == pytest.approx(0.75)  # at 0.4: 0.45 is called atypical
    assert out["plain"]["roc_auc"] == pytest.approx(1.0)
    assert "without_one_seed" not in out["plain"]  # two seeds: leaving one out is no ensemble


def test_ensemble_of_three_seeds_also_reports_each_two_seed_ensemble(recipes: ModuleType, tmp_path: Path) -> None:
    labels = [0, 0, 1, 1]
    _write_run(tmp_path, "plain", 0, labels, [0.1, 0.2, 0.8, 0.9])  # perfect
    _write_run(tmp_path, "plain", 1, labels, [0.1, 0.2, 0.8, 0.9])  # perfect
    _write_run(tmp_path, "plain", 2, labels, [0.9, 0.9, 0.1, 0.1])  # inverted: drags any ensemble it is in
    runs = [{"recipe": "plain", "seed": s, "threshold": 0.5, "threshold_tta": 0.5} for s in (0, 1, 2)]
    out = holdout.ensembles(runs, tmp_path)["plain"]
    assert out["seeds"] == [0, 1, 2]
    loo = {tuple(e["seeds"]): e for e in out["without_one_seed"]}
    assert set(loo) == {(1, 2), (0, 2), (0, 1)}
    assert loo[(0, 1)]["balanced_accuracy"] == pytest.approx(1.0) and loo[(0, 1)]["roc_auc"] == pytest.approx(1.0)
    # means 0.5, 0.55, 0.45, 0.5 at threshold 0.5: both normals called atypical, one atypical missed
    assert loo[(0, 2)]["balanced_accuracy"] == pytest.approx(0.25)


def test_variants_and_overrides_compose(recipes: ModuleType) -> None:
    last = recipes.recipe_config("plain+last", seed=1, epochs=None, extra=["optim.batch_size=16"])
    assert last.optim.select_metric == "last" and last.optim.batch_size == 16
    assert recipes.recipe_config("plain", seed=1, epochs=None).optim.select_metric == "balanced_accuracy"
    both = recipes.recipe_config("full-cpu-no_mixup+auc", seed=0, epochs=None)
    assert not both.strategies.mixup.enabled and both.optim.select_metric == "roc_auc"
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        recipes.recipe_config("plain+nope", seed=0, epochs=None)


def test_recipe_is_chosen_on_validation_not_test(recipes: ModuleType) -> None:
    def runs(recipe: str, val_auc: float, test_ba: float, n: int) -> list[dict]:
        return [{"recipe": recipe, "seed": s, "val_roc_auc": val_auc, "val_balanced_accuracy": 0.8,
                 "test_balanced_accuracy": test_ba, "test_roc_auc": 0.8} for s in range(n)]

    # "b" has the best test figures, "a" the best validation AUC, "c" is better still but has too few seeds
    summary = holdout.summarise(runs("a", 0.90, 0.70, 3) + runs("b", 0.85, 0.80, 3) + runs("c", 0.95, 0.9, 2))
    chosen = holdout.chosen_on_validation(summary)
    assert chosen["recipe"] == "a" and [r[0] for r in chosen["ranking"]] == ["a", "b"]
    assert chosen["test"]["balanced_accuracy_mean"] == pytest.approx(0.70)
    assert holdout.chosen_on_validation(summary, min_seeds=4) is None


def test_ablation_means_average_the_seed_paired_changes(recipes: ModuleType) -> None:
    def entry(seed: int, off: str, delta: float) -> dict:
        return {"seed": seed, "switched_off": off, "delta_balanced_accuracy": {"delta": delta},
                "delta_roc_auc": delta / 2}

    paired = {"a0": entry(0, "mixup", 0.04), "a1": entry(1, "mixup", -0.02), "b0": entry(0, "augment", -0.05)}
    means = holdout.ablation_means(paired)
    assert means["mixup"]["n_seeds"] == 2 and means["mixup"]["delta_balanced_accuracy_mean"] == pytest.approx(0.01)
    assert means["mixup"]["delta_balanced_accuracy_per_seed"] == [0.04, -0.02]
    assert means["augment"]["delta_roc_auc_mean"] == pytest.approx(-0.025)
    assert "delta_balanced_accuracy_tta_mean" not in means["augment"]


def test_threshold_headroom_compares_the_run_threshold_with_the_test_oracle(recipes: ModuleType,
                                                                            tmp_path: Path) -> None:
    labels = [0, 1] * 20
    # perfectly ranked, but the stored threshold 0.5 calls every figure normal: 0.5 against an oracle 1.0
    _write_run(tmp_path, "plain", 0, labels, [0.3 if y else 0.1 for y in labels])
    out = holdout.threshold_headroom([{"recipe": "plain", "seed": 0}, {"recipe": "gone", "seed": 0}], tmp_path)
    assert list(out) == ["plain"]
    assert out["plain"]["at_validation_threshold"] == pytest.approx(0.5)
    assert out["plain"]["at_best_test_threshold"] == pytest.approx(1.0)
    assert out["plain"]["n_seeds_tta"] == 1


def test_queue_runs_recipes_first_then_the_ablation_seed_by_seed(recipes: ModuleType) -> None:
    import argparse

    args = argparse.Namespace(recipes=["plain", "full-cpu"], seeds=[0, 1], ablate="full-cpu",
                              strategies=["mixup", "augment"], ablate_seeds=[0])
    queue = holdout.build_queue(args, done={("plain", 1)})
    assert queue == [("plain", 0), ("full-cpu", 0), ("full-cpu", 1),
                     ("full-cpu-no_mixup", 0), ("full-cpu-no_augment", 0)]  # full-cpu seed 0 only once
    args.recipes, args.ablate_seeds = None, None
    assert holdout.build_queue(args, done=set())[:3] == [("full-cpu", 0), ("full-cpu-no_mixup", 0),
                                                         ("full-cpu-no_augment", 0)]


def test_results_file_keeps_every_command_that_added_runs(recipes: ModuleType) -> None:
    first = "python benchmarks/amibr_recipes.py --recipes plain --seeds 0"
    second = "python benchmarks/amibr_recipes.py --recipes plain --seeds 1"
    both = recipes.combined_command(first, second)
    assert both == f"{first} && {second}"
    assert recipes.combined_command(both, second) == both  # a rerun of the same command is not repeated
    assert recipes.combined_command(both, first) == both


def test_results_file_refuses_runs_under_other_settings(recipes: ModuleType) -> None:
    """Runs are matched by (recipe, seed): pooling 224 px runs with 128 px ones would pass one off as the other."""
    runs = [{"recipe": "plain", "seed": 0, "overrides": ["model.input_size=224", "optim.device=cuda"]}]
    assert holdout.settings_clash(runs, ["model.input_size=224"]) is None  # the device is placement only
    assert holdout.settings_clash([], ["model.backbone=x"]) is None
    clash = holdout.settings_clash(runs, [])
    assert clash is not None and "plain seed 0" in clash and "--name" in clash
    assert holdout.settings_clash(runs, ["model.input_size=224", "model.backbone=x"]) is not None


def test_sweep_under_new_settings_into_an_old_results_file_exits_with_one_line(
        tmp_path: Path) -> None:
    import subprocess

    results = BENCHMARKS / "results" / "amibr_recipes_224.json"
    if not results.is_file():
        pytest.skip(f"{results} is not in this checkout")
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "amibr_recipes.py"), "--name", "amibr_recipes_224",
                           "--work", str(tmp_path), "--recipes", "plain", "--seeds", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "amibr_recipes_224.json" in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written
