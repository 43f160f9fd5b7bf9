"""The training loop: artifacts, exact resume, and DDP agreeing with one process."""

from __future__ import annotations

import json
import math
import socket

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mitotype.evaluation.splits import validation_split
from mitotype.models.artifact import load_model_artifact
from mitotype.training.config import load_config
from mitotype.training.evaluator import Evaluator
from mitotype.training.strategies.domain_adversarial import grl_coefficient
from mitotype.training.trainer import Trainer
from tests.conftest import TINY_OVERRIDES


def _split(figures, seed=0):
    return validation_split(figures.records, np.arange(len(figures.records)), fraction=0.25, seed=seed)


def _trainer(figures, out, overrides=(), **kw):
    config = load_config(overrides=[*TINY_OVERRIDES, *overrides])
    train_idx, val_idx = _split(figures)
    return Trainer(config, figures.records, figures.images, train_idx, val_idx, out, progress=False,
                   log=None, **kw)


def test_training_writes_a_model_with_its_threshold(synth_figures, tmp_path):
    trainer = _trainer(synth_figures, tmp_path / "run", overrides=["optim.epochs=1"])
    result = trainer.fit()
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert 0.0 < meta["threshold"] < 1.0
    assert meta["threshold"] == pytest.approx(result.threshold)
    assert meta["preprocessing"]["input_size"] == [3, 56, 56]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and "val_balanced_accuracy" in json.loads(lines[0])
    row = json.loads(lines[0])
    assert row["seconds_train"] > 0 and row["train_images_per_second"] > 0 and row["seconds_validation"] > 0
    # The artifact holds only adapters and heads, and rebuilds the very same model.
    tensors = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all("lora_" in k or not k.startswith("backbone.") for k in tensors)
    loaded = load_model_artifact(tmp_path / "run")
    p_trainer = trainer.predict(trainer.val_idx)
    from mitotype.models.predict import predict_proba

    p_loaded = predict_proba(loaded.model, synth_figures.images[trainer.val_idx], batch_size=64)
    np.testing.assert_allclose(p_loaded, p_trainer, atol=1e-6)


def test_resume_continues_to_the_same_result(synth_figures, tmp_path):
    full = _trainer(synth_figures, tmp_path / "full", overrides=["optim.epochs=3"])
    full.fit()
    part = _trainer(synth_figures, tmp_path / "part", overrides=["optim.epochs=3"])
    part.fit(stop_after_epoch=2)
    assert len((tmp_path / "part" / "metrics.jsonl").read_text().splitlines()) == 2
    resumed = _trainer(synth_figures, tmp_path / "part", overrides=["optim.epochs=3"])
    resumed.fit(resume=True)
    a = full.model.trainable_state_dict()
    b = resumed.model.trainable_state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    hist_full = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    hist_res = [json.loads(x) for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [h["loss"] for h in hist_full] == [h["loss"] for h in hist_res]


def test_single_class_validation_is_refused(synth_figures, tmp_path):
    from mitotype.errors import ConfigError

    config = load_config(overrides=TINY_OVERRIDES)
    labels = np.array([r.label for r in synth_figures.records])
    train_idx, val_idx = _split(synth_figures)
    only_normal = val_idx[labels[val_idx] == 0]
    trainer = Trainer(config, synth_figures.records, synth_figures.images, train_idx, only_normal, tmp_path)
    with pytest.raises(ConfigError, match="validation split holds only one class"):
        trainer.prepare()  # building a trainer checks nothing; preparing it (or fit) does
    with pytest.raises(ConfigError, match="validation split holds only one class"):
        trainer.fit()
    assert not any(tmp_path.iterdir())  # refused before the run folder was touched


def test_grl_ramp():
    dann = [grl_coefficient(p / 10, 1.0, "dann") for p in range(11)]  # DANN's 2 / (1 + exp(-10 p)) - 1
    assert dann[0] == 0.0 and dann[-1] > 0.99 and dann == sorted(dann)
    assert dann[5] == pytest.approx(2.0 / (1.0 + math.exp(-5.0)) - 1.0)
    assert grl_coefficient(0.0, 1.0, "dann") == pytest.approx(0.0)
    assert grl_coefficient(1.0, 1.0, "dann") == pytest.approx(1.0, abs=1e-4)
    assert grl_coefficient(0.5, 2.0, "linear") == pytest.approx(1.0)
    assert grl_coefficient(0.1, 0.7, "constant") == pytest.approx(0.7)


# --------------------------------------------------------------------------- DDP on CPU (gloo)

DDP_OVERRIDES = ["optim.epochs=2", "strategies.supcon.enabled=false", "model.lora.dropout=0.0",
                 "model.head_dropout=0.0"]


def _ddp_worker(rank, world, port, synth_dir, cache, out, extra=()):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from mitotype.training.inputs import load_figures

    figures = load_figures(synth_dir, fmt="midog25", domain=["scanner"], cache_dir=cache)
    trainer = _trainer(figures, out, overrides=[*DDP_OVERRIDES, *extra])
    result = trainer.fit()
    if rank == 0:  # a file, not a queue: a full pipe would block while the parent joins
        from safetensors.torch import save_file

        save_file(trainer.model.trainable_state_dict(), f"{out}/final.safetensors",
                  metadata={"threshold": str(result.threshold)})
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("optim.weight_averaging=ema", "optim.ema_decay=0.5")], ids=["plain", "ema"])
def test_ddp_two_processes_agree_with_one(synth_dir, synth_figures, tmp_path, extra):
    import torch.multiprocessing as mp

    single = _trainer(synth_figures, tmp_path / "single", overrides=[*DDP_OVERRIDES, *extra])
    single_result = single.fit()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.start_processes(_ddp_worker, nprocs=2, start_method="spawn",
                       args=(2, port, str(synth_dir), str(tmp_path / "cache"), str(tmp_path / "ddp"), extra))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ddp" / "final.safetensors"), framework="pt") as fh:
        threshold = float(fh.metadata()["threshold"])
        state = {k: fh.get_tensor(k).numpy() for k in fh.keys()}  # noqa: SIM118
    expected = single.model.trainable_state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(state[key], value.numpy(), atol=2e-4, err_msg=key)
    assert threshold == pytest.approx(single_result.threshold, abs=1e-3)


def test_resume_refuses_another_configuration_and_leaves_the_run_as_it_was(synth_figures, tmp_path):
    from mitotype.errors import MitotypeError

    _trainer(synth_figures, tmp_path / "run", overrides=["optim.epochs=1"]).fit()
    before = {name: (tmp_path / "run" / name).read_bytes() for name in ("config.yaml", "run.json")}
    assert b'"finished"' in before["run.json"]
    other = _trainer(synth_figures, tmp_path / "run", overrides=["optim.epochs=1", "optim.lr=0.01"])
    with pytest.raises(MitotypeError, match="another configuration or other figures"):
        other.fit(resume=True)
    # refused before anything was written: the finished run keeps its configuration and its status
    assert {name: (tmp_path / "run" / name).read_bytes() for name in before} == before


def test_an_early_stopped_run_stays_stopped_on_resume(synth_figures, tmp_path, monkeypatch):
    flat = {"balanced_accuracy": 0.6, "roc_auc": 0.6, "threshold": 0.5}
    monkeypatch.setattr(Evaluator, "validate", lambda self: dict(flat))  # no epoch ever improves
    overrides = ["optim.epochs=6", "optim.patience=1"]
    first = _trainer(synth_figures, tmp_path / "run", overrides=overrides).fit()
    assert len(first.history) == 2
    again = _trainer(synth_figures, tmp_path / "run", overrides=overrides).fit(resume=True)
    assert len(again.history) == 2


def test_the_model_stores_a_tta_threshold(synth_figures, tmp_path):
    _trainer(synth_figures, tmp_path / "run", overrides=["optim.epochs=1"]).fit()
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert 0.0 < meta["threshold_tta"] < 1.0


def test_the_model_stores_a_calibration_fitted_on_its_validation_scores(synth_figures, tmp_path, monkeypatch):
    """Each way of scoring gets the Platt map of the kept model's validation scores, with the validation
    prevalence it holds at; the map keeps the ranking (positive slope). The scores are made informative (a tiny
    model barely learns in two epochs) and differ between one view and TTA, as real ones do."""
    from mitotype.evaluation.calibration import fit_calibration
    from mitotype.models.artifact import read_artifact_meta, stored_calibration

    labels = np.array([r.label for r in synth_figures.records])
    noise = np.random.default_rng(0).random(len(labels))

    def scores(self, idx, tta=False):
        return np.clip(0.15 + 0.5 * labels[idx] + (0.3 if tta else 0.45) * noise[idx], 0, 1).astype(np.float32)

    monkeypatch.setattr(Evaluator, "predict", scores)
    trainer = _trainer(synth_figures, tmp_path / "run", overrides=["optim.epochs=2"])
    trainer.fit()
    meta = read_artifact_meta(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "model.json").read_text())["calibration"] == meta["calibration"]
    y = trainer.labels[trainer.val_idx]
    for tta in (False, True):
        cal = stored_calibration(meta, tta)
        assert cal is not None and cal.slope > 0
        assert cal.prevalence == pytest.approx(float(np.mean(y)))
        assert cal.figures == len(y)
        again = fit_calibration(y, trainer.predict(trainer.val_idx, tta=tta))
        assert (cal.slope, cal.intercept) == pytest.approx((again.slope, again.intercept), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize(("metric", "expected_epoch"), [("balanced_accuracy", 2), ("roc_auc", 3), ("last", 4)])
def test_select_metric_picks_the_epoch(synth_figures, tmp_path, monkeypatch, metric, expected_epoch):
    script = iter([
        {"balanced_accuracy": 0.60, "roc_auc": 0.70, "threshold": 0.41},
        {"balanced_accuracy": 0.80, "roc_auc": 0.75, "threshold": 0.42},  # best balanced accuracy
        {"balanced_accuracy": 0.70, "roc_auc": 0.90, "threshold": 0.43},  # best ROC AUC
        {"balanced_accuracy": 0.65, "roc_auc": 0.85, "threshold": 0.44},  # last
    ])
    monkeypatch.setattr(Evaluator, "validate", lambda self: dict(next(script)))
    result = _trainer(synth_figures, tmp_path / "run",
                      overrides=["optim.epochs=4", f"optim.select_metric={metric}"]).fit()
    assert result.best_epoch == expected_epoch
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["threshold"] == pytest.approx(0.40 + expected_epoch / 100)


def test_select_metric_must_be_known():
    from mitotype.errors import ConfigError

    with pytest.raises(ConfigError, match="select_metric"):
        load_config(overrides=[*TINY_OVERRIDES, "optim.select_metric=accuracy"])


@pytest.mark.parametrize("batches", [1, 2, 3, 4, 5, 8])
def test_onecycle_schedule_runs_on_a_tiny_dataset(batches: int) -> None:
    """A one-epoch run of a handful of batches steps through its whole schedule (4 steps once divided by zero)."""
    from mitotype.training.trainer import build_optimizer

    optim = load_config(preset="plain", overrides=["optim.epochs=1"]).optim
    assert optim.schedule == "onecycle"
    model = torch.nn.Linear(2, 1)
    optimizer, scheduler, total = build_optimizer(model, optim, batches_per_epoch=batches)
    assert total == batches
    for _ in range(total):
        optimizer.step()
        scheduler.step()
    assert 0 <= optimizer.param_groups[0]["lr"] <= optim.lr


def test_val_platt_stores_the_platt_thresholds_of_the_validation_scores(synth_figures, tmp_path):
    from mitotype.evaluation.metrics import best_threshold
    from mitotype.evaluation.thresholds import platt_threshold

    trainer = _trainer(synth_figures, tmp_path / "run", overrides=["optim.epochs=1", "threshold=val-platt"])
    trainer.fit()
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    y = trainer.labels[trainer.val_idx]
    p_single, p_tta = trainer.predict(trainer.val_idx), trainer.predict(trainer.val_idx, tta=True)
    assert meta["threshold"] == pytest.approx(platt_threshold(y, p_single), abs=1e-6)
    assert meta["threshold_tta"] == pytest.approx(platt_threshold(y, p_tta), abs=1e-6)
    # On overlapping scores the two rules part: the curve's cut is not the argmax of a few figures.
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], [150, 50])
    p = 1 / (1 + np.exp(-(rng.normal(size=200) + 1.5 * y - 0.5)))
    assert trainer.evaluator.choose_threshold(y, p) == pytest.approx(platt_threshold(y, p))
    assert trainer.evaluator.choose_threshold(y, p) != pytest.approx(best_threshold(y, p), abs=1e-3)
