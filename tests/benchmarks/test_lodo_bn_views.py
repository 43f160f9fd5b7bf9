"""The BatchNorm-views benchmark runs end to end on fold models of a tiny leave-one-domain-out run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TINY_OVERRIDES, load_benchmark


@pytest.mark.slow
def test_bn_views_scores_every_finished_fold_three_ways(synth_dir: Path, synth_figures: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from mitotype.experiments.cv import run_cv
    from mitotype.training.config import load_config

    overrides = [*TINY_OVERRIDES, "optim.epochs=1", "model.backbone=tiny-efficientnet", "model.adaptation=full",
                 "model.input_size=64"]
    config = load_config(preset="plain", overrides=[f"data.path={synth_dir}", "seed=0", *overrides])
    domains = sorted({r.domain for r in synth_figures.records})
    run_cv(config, synth_figures, tmp_path / "run" / "cv", scheme="lodo", report=False, only=domains[:2])

    bench = load_benchmark("lodo_bn_views")
    argv = ["lodo_bn_views.py", "--work", str(tmp_path / "run"), "--preset", "plain", "--results-dir", str(tmp_path),
            "--name", "views"]
    argv += [a for o in [f"data.path={synth_dir}", *overrides] for a in ("--set", o)]
    monkeypatch.setattr(sys, "argv", argv)
    assert bench.main() == 0

    result = json.loads((tmp_path / "views.json").read_text())
    per_domain = result["figures"]["per_domain"]
    assert sorted(per_domain) == domains[:2]  # unfinished folds are skipped
    for rows in per_domain.values():
        assert set(rows) == set(bench.WAYS)
        for row in rows.values():
            assert 0.0 <= row["balanced_accuracy"] <= 1.0 and 0.0 <= row["threshold"] <= 1.0
    assert set(result["figures"]["summary"]) == set(bench.WAYS)
