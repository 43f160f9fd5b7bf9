"""Nested leave-one-domain-out thresholds: the rules are applied to the outer model's held-out scores, and the
held-out domain never reaches an inner training, validation or rule."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from mitotype.training.trainer import Trainer
from tests.conftest import TINY_OVERRIDES, load_benchmark


@pytest.fixture(scope="module")
def nested() -> ModuleType:
    return load_benchmark("lodo_nested")


def rows(domain: str, y: np.ndarray, p: np.ndarray, threshold: float) -> list[dict[str, Any]]:
    return [{"domain": domain, "label": int(a), "p_atypical": float(b), "threshold": threshold} for a, b in zip(y, p)]


def scores(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(n) < 0.25).astype(int)
    z = rng.normal(np.where(y == 1, 1.0, -1.0), 1.0) + shift
    return y, 1.0 / (1.0 + np.exp(-z))


def test_fold_rules_follow_a_domain_shift_the_validation_threshold_misses(nested: ModuleType) -> None:
    """Every unseen domain scores lower than validation: the nested rules learn it from the inner folds."""
    rng = np.random.default_rng(0)
    inner = [rows(d, *scores(rng, 800, -1.5), threshold=0.5) for d in ("a", "b", "c")]
    outer = rows("new", *scores(rng, 800, -1.5), threshold=0.5)
    fold = nested.fold_rules(outer, inner)
    assert fold["domain"] == "new" and fold["n"] == 800 and set(fold["inner"]) == {"a", "b", "c"}
    rules = fold["rules"]
    assert set(rules) == set(nested.RULES)
    assert rules["validation"]["threshold"] == 0.5
    for rule in ("nested-pooled", "nested-robust", "nested-shift"):
        assert rules[rule]["threshold"] < 0.4, rule
        assert rules[rule]["sensitivity"] > rules["validation"]["sensitivity"] + 0.2, rule
        assert rules[rule]["balanced_accuracy"] <= rules["oracle"]["balanced_accuracy"] + 1e-12, rule

    summary = nested.summarise({"f1": fold, "f2": nested.fold_rules(rows("other", *scores(rng, 400, 0.0), 0.5),
                                                                     inner)})
    val = summary["validation"]
    assert val["min_domain_balanced_accuracy"] <= val["mean_domain_balanced_accuracy"]
    assert val["pooled_balanced_accuracy"] == pytest.approx((val["pooled_sensitivity"]
                                                             + val["pooled_specificity"]) / 2)


@pytest.mark.slow
def test_nested_run_never_trains_on_the_held_out_domain(nested: ModuleType, synth_dir: Path, synth_figures: Any,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mitotype.experiments.cv import run_cv
    from mitotype.training.config import load_config

    overrides = [*TINY_OVERRIDES, "optim.epochs=1", "model.input_size=56"]
    config = load_config(preset="plain", overrides=[f"data.path={synth_dir}", "seed=0", *overrides])
    domains = sorted({r.domain for r in synth_figures.records})
    outer_domains = domains[:2]  # two outer folds (and their 2 x 3 inner trainings) keep the test short
    run_cv(config, synth_figures, tmp_path / "outer" / "cv", scheme="lodo", report=False, only=outer_domains)

    seen: list[set[str]] = []
    original = Trainer.__init__

    def init(self, config, records, images, train_idx, val_idx, out_dir, **kw):
        seen.append({records[i].domain for i in np.concatenate([train_idx, val_idx])})
        original(self, config, records, images, train_idx, val_idx, out_dir, **kw)

    monkeypatch.setattr(Trainer, "__init__", init)
    argv = ["lodo_nested.py", "--outer", str(tmp_path / "outer"), "--work", str(tmp_path / "inner"),
            "--preset", "plain", "--results-dir", str(tmp_path), "--name", "nested", "--folds", *domains]
    argv += [a for o in [f"data.path={synth_dir}", *overrides] for a in ("--set", o)]
    monkeypatch.setattr(sys, "argv", argv)
    assert nested.main() == 0

    # the unfinished outer folds are skipped; one inner training per (held-out, training domain) pair
    assert len(seen) == len(outer_domains) * (len(domains) - 1)
    result = json.loads((tmp_path / "nested.json").read_text())
    per_fold = result["figures"]["per_fold"]
    assert sorted(f["domain"] for f in per_fold.values()) == outer_domains
    for fold in per_fold.values():
        assert fold["domain"] not in fold["inner"] and len(fold["inner"]) == len(domains) - 1
    # each outer domain's inner trainings saw two training domains, never the held-out one
    for n, held_out in enumerate(f["domain"] for f in per_fold.values()):
        for used in seen[n * 3:(n + 1) * 3]:
            assert held_out not in used and len(used) == len(domains) - 2
    assert set(result["figures"]["summary"]) == set(nested.RULES)
