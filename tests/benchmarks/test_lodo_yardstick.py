"""The prevalence-shift yardstick runs end to end on the fold models of a tiny leave-one-domain-out run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import TINY_OVERRIDES, load_benchmark

OVERRIDES = [*TINY_OVERRIDES, "optim.epochs=1", "model.backbone=tiny-efficientnet", "model.adaptation=full",
             "model.input_size=64"]


@pytest.fixture(scope="module")
def two_seed_runs(synth_dir: Path, synth_figures: Any, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from mitotype.experiments.cv import run_cv
    from mitotype.training.config import load_config

    root = tmp_path_factory.mktemp("yardstick")
    domains = sorted({r.domain for r in synth_figures.records})
    works = []
    for seed in (0, 1):
        config = load_config(preset="plain", overrides=[f"data.path={synth_dir}", f"seed={seed}", *OVERRIDES])
        run_cv(config, synth_figures, root / f"s{seed}" / "cv", scheme="lodo", report=False, only=domains[:2])
        works.append(root / f"s{seed}")
    return works


def _run(bench: Any, monkeypatch: pytest.MonkeyPatch, synth_dir: Path, out: Path, *args: str) -> dict[str, Any]:
    argv = ["lodo_yardstick.py", "--preset", "plain", "--results-dir", str(out), "--name", "y", "--no-onnx", *args]
    argv += [a for o in [f"data.path={synth_dir}", *OVERRIDES] for a in ("--set", o)]
    monkeypatch.setattr(sys, "argv", argv)
    assert bench.main() == 0
    return json.loads((out / "y.json").read_text())


@pytest.mark.slow
def test_yardstick_scores_every_option_at_every_prevalence(two_seed_runs: list[Path], synth_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_benchmark("lodo_yardstick")
    result = _run(bench, monkeypatch, synth_dir, tmp_path, "--work", *map(str, two_seed_runs), "--seeds", "0", "1",
                  "--prevalences", "natural", "0.1", "--draws", "2")
    summary = result["figures"]["summary"]
    for variant in bench.VARIANTS:
        for label in (variant, f"{variant}@10%"):
            for rule in bench.RULES:
                row = summary[f"{label}|{rule}"]
                assert 0.0 <= row["pooled_balanced_accuracy"] <= 1.0
                assert row["draws"] == (1 if label == variant else 2)
                assert 0.0 <= row["pooled_ece"] <= 1.0
    assert "ensemble-tta@10%|platt" in summary and "ensemble-single+adabn-domain|platt" not in summary
    per_domain = result["figures"]["per_domain"]
    assert len(per_domain) == 2
    for entry in per_domain.values():
        assert entry["n_test"] > entry["n_pos"] > 0
        assert 0.0 <= entry["tta@10%"]["rules"]["platt"]["balanced_accuracy"] <= 1.0
    # Each fold keeps its scores: the adaptive options one p per figure of every draw, in the draw's order.
    cache = next((two_seed_runs[0] / "cv" / "folds").glob("*/yardstick.json"))
    stored = json.loads(cache.read_text())
    y = np.asarray(stored["y_test"])
    draws = stored["variants"]["single+adabn-domain"]["draws"]
    assert len(draws["natural"]) == 1 and len(draws["natural"][0]) == len(y)
    assert len(draws["0.1"]) == 2 and len(draws["0.1"][0]) < len(y)


@pytest.mark.slow
def test_yardstick_is_read_back_without_inference_and_feeds_the_lever_table(
    two_seed_runs: list[Path], synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_benchmark("lodo_yardstick")
    args = ("--work", str(two_seed_runs[0]), "--seeds", "0", "--prevalences", "natural", "0.1", "--draws", "2",
            "--variants", "single", "tta", "single+adabn-balanced")
    first = _run(bench, monkeypatch, synth_dir, tmp_path, *args)
    calls: list[int] = []
    monkeypatch.setattr(bench.FoldScorer, "scores", lambda *a, **k: calls.append(1))
    second = _run(bench, monkeypatch, synth_dir, tmp_path, *args)
    assert not calls  # every score came from the folds' yardstick.json
    assert second["figures"]["summary"] == first["figures"]["summary"]

    levers = load_benchmark("lodo_levers")
    got = levers.transfer_figures(second, "single+adabn-balanced@10%|platt")
    assert got["pooled_ba"] == pytest.approx(second["figures"]["summary"]["single+adabn-balanced@10%|platt"]
                                             ["pooled_balanced_accuracy"])
