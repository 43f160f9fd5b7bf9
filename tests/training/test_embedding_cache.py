"""Frozen backbones train their heads on cached embeddings: the same model as without the cache, computed once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mitotype.evaluation.splits import validation_split
from mitotype.models.artifact import load_model_artifact
from mitotype.models.classifier import build_classifier
from mitotype.models.embedding_cache import EmbeddingTable
from mitotype.models.predict import predict_proba
from mitotype.training.config import load_config
from mitotype.training.trainer import Trainer
from tests.conftest import TINY_OVERRIDES

PROBE = [*TINY_OVERRIDES, "model.adaptation=frozen", "strategies.augment.enabled=false",
         "strategies.mixup.enabled=false", "model.head_dropout=0.0"]


def _fit(figures, out: Path, cache: Path, extra: list[str]) -> tuple[Trainer, object]:
    config = load_config(overrides=[*PROBE, f"data.cache_dir={cache}", *extra])
    train_idx, val_idx = validation_split(figures.records, np.arange(len(figures.records)), fraction=0.25, seed=0)
    notes: list[str] = []
    trainer = Trainer(config, figures.records, figures.images, train_idx, val_idx, out, log=notes.append)
    result = trainer.fit()
    trainer.notes = notes
    return trainer, result


@pytest.mark.slow
def test_cached_heads_train_like_uncached_and_reuse_the_cache(synth_figures, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cached, r_cached = _fit(synth_figures, tmp_path / "a", cache, [])
    assert cached.embeddings is not None
    assert any("embedding cache" in n and f"{len(synth_figures.records)} figure embeddings computed" in n
               for n in cached.notes)
    plain, r_plain = _fit(synth_figures, tmp_path / "b", cache, ["optim.embedding_cache=false"])
    assert plain.embeddings is None
    # Same training: the same validation figures per epoch and the same thresholds, to float tolerance.
    for a, b in zip(r_cached.history, r_plain.history):
        assert a["val_roc_auc"] == pytest.approx(b["val_roc_auc"], abs=1e-6)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    assert r_cached.threshold == pytest.approx(r_plain.threshold, abs=1e-5)
    assert json.loads((tmp_path / "a" / "model.json").read_text())["threshold_tta"] == pytest.approx(
        json.loads((tmp_path / "b" / "model.json").read_text())["threshold_tta"], abs=1e-5)
    # The saved models predict alike on images (the artifact is an ordinary model).
    pa = predict_proba(load_model_artifact(tmp_path / "a").model, synth_figures.images, tta=True)
    pb = predict_proba(load_model_artifact(tmp_path / "b").model, synth_figures.images, tta=True)
    assert np.abs(pa - pb).max() < 1e-4
    # Another head on the same backbone and figures: nothing is computed again.
    again, _ = _fit(synth_figures, tmp_path / "c", cache, ["model.head_hidden=16", "optim.lr=3e-3"])
    assert again.embeddings is not None and again.embeddings.computed == 0


def test_the_key_follows_pixels_weights_and_input_size(synth_figures, tmp_path: Path) -> None:
    config = load_config(overrides=PROBE)
    model = build_classifier(config.model, num_domains=0).eval()
    images = np.asarray(synth_figures.images[:6])
    first = EmbeddingTable(model, images, tmp_path)
    emb = first.get(np.arange(6), range(8))
    assert emb.shape[:2] == (6, 8) and first.computed == 6 * 8
    assert EmbeddingTable(model, images, tmp_path).folder == first.folder
    assert np.array_equal(EmbeddingTable(model, images, tmp_path).get(np.arange(6), range(8)), emb)
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    assert EmbeddingTable(model, changed, tmp_path).folder != first.folder
    other = build_classifier(config.model, num_domains=0).eval()
    with __import__("torch").no_grad():
        next(other.backbone.parameters()).add_(1.0)
    assert EmbeddingTable(other, images, tmp_path).folder != first.folder


def test_strategies_that_change_images_turn_the_cache_off(synth_figures, tmp_path: Path) -> None:
    config = load_config(overrides=[*TINY_OVERRIDES, "model.adaptation=frozen", f"data.cache_dir={tmp_path}"])
    train_idx, val_idx = validation_split(synth_figures.records, np.arange(len(synth_figures.records)),
                                          fraction=0.25, seed=0)
    notes: list[str] = []
    trainer = Trainer(config, synth_figures.records, synth_figures.images, train_idx, val_idx, tmp_path / "r",
                      log=notes.append)
    trainer._build()
    assert trainer.embeddings is None
    assert any("embedding cache is off" in n and "mixup" in n for n in notes)
