"""Weight averaging (EMA, SWA): the averages themselves on a tiny model, BatchNorm statistics recomputed for
the averaged weights, and training runs that keep the average and resume to the very same result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from mitotype.evaluation.splits import validation_split
from mitotype.training.averaging import WeightAverager, recompute_batchnorm, swa_start_epoch
from mitotype.training.config import load_config
from mitotype.training.trainer import Trainer
from tests.conftest import TINY_OVERRIDES


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Tanh(), nn.Linear(3, 1))
    model[0].bias.requires_grad_(False)  # a frozen parameter is not averaged
    return model


def _steps(model: nn.Module, n: int, averager: WeightAverager,
           per_epoch: bool = False) -> list[dict[str, torch.Tensor]]:
    """n SGD steps on random data; the trainable weights after each step."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.2)
    gen = torch.Generator().manual_seed(1)
    snapshots = []
    for step in range(n):
        x = torch.randn(8, 4, generator=gen)
        loss = (model(x).squeeze(1) - torch.randn(8, generator=gen)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if per_epoch:
            averager.after_epoch(model, step)
        else:
            averager.after_step(model)
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
    return snapshots


def test_ema_is_the_exponential_average_of_the_steps() -> None:
    model = _tiny()
    averager = WeightAverager(model, "ema", decay=0.6)
    snaps = _steps(model, 5, averager)
    assert averager.n_averaged == 5
    assert sorted(averager.tensors) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert "0.bias" not in averager.tensors
    for name, value in averager.tensors.items():
        expected = snaps[0][name]
        for snap in snaps[1:]:
            expected = 0.6 * expected + 0.4 * snap[name]
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
        assert not torch.allclose(value, dict(model.named_parameters())[name])  # not the raw weights


def test_swa_is_the_plain_mean_of_the_epochs_from_swa_start() -> None:
    model = _tiny()
    start = swa_start_epoch(0.4, epochs=5)
    assert start == 2 and swa_start_epoch(0.99, epochs=5) == 4  # the last epoch is always averaged
    averager = WeightAverager(model, "swa", start_epoch=start)
    snaps = _steps(model, 5, averager, per_epoch=True)
    assert averager.n_averaged == 3 and not averager.ready(1) and averager.ready(2)
    for name, value in averager.tensors.items():
        expected = torch.stack([s[name] for s in snaps[2:]]).mean(dim=0)  # epochs 3, 4, 5 (0-based 2..4)
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
        assert not torch.allclose(value, snaps[-1][name])
    averager.after_step(model)  # SWA ignores optimiser steps
    assert averager.n_averaged == 3


def test_the_swap_puts_the_average_in_and_the_training_weights_back() -> None:
    model = _tiny()
    averager = WeightAverager(model, "ema", decay=0.5)
    _steps(model, 3, averager)
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(3))
    with averager.swapped_in(model, lambda m: recompute_batchnorm(m, [x[:32], x[32:]])):
        for name, value in averager.tensors.items():
            assert torch.equal(dict(model.named_parameters())[name], value)
        # the BatchNorm statistics are those of the averaged weights: the mean of the two batches' statistics
        with torch.no_grad():
            h = model[0](x)
        expected_mean = (h[:32].mean(0) + h[32:].mean(0)) / 2
        torch.testing.assert_close(model[1].running_mean, expected_mean, rtol=0, atol=1e-6)
    for key, value in model.state_dict().items():
        assert torch.equal(value, raw[key]), key


def test_batchnorm_kept_in_eval_keeps_its_statistics() -> None:
    class Frozen(nn.Module):  # BatchNorm in eval under train(), as a LoRA backbone keeps its pretrained statistics
        def __init__(self) -> None:
            super().__init__()
            self.net = _tiny()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def train(self, mode: bool = True) -> Frozen:
            super().train(mode)
            self.net[1].eval()
            return self

    model = Frozen()
    model.net[1].running_mean.fill_(0.25)
    assert recompute_batchnorm(model, [torch.randn(8, 4)]) is False  # nothing trains: nothing to do
    assert torch.all(model.net[1].running_mean == 0.25)


def test_a_resume_state_round_trips() -> None:
    model = _tiny()
    averager = WeightAverager(model, "ema", decay=0.9)
    _steps(model, 2, averager)
    again = WeightAverager(model, "ema", decay=0.9)
    again.load_state_dict(averager.state_dict())
    assert again.n_averaged == 2
    for name, value in averager.tensors.items():
        assert torch.equal(again.tensors[name], value)
    with pytest.raises(ValueError, match="swa"):
        WeightAverager(model, "swa").load_state_dict(averager.state_dict())


# --------------------------------------------------------------------------- in the trainer


def _trainer(figures, out, overrides=()):
    config = load_config(overrides=[*TINY_OVERRIDES, *overrides])
    train_idx, val_idx = validation_split(figures.records, np.arange(len(figures.records)), fraction=0.25, seed=0)
    return Trainer(config, figures.records, figures.images, train_idx, val_idx, out, progress=False, log=None)


def _resumed_equals_uninterrupted(figures, tmp_path, overrides, stop_after: int) -> tuple[Trainer, Trainer]:
    full = _trainer(figures, tmp_path / "full", overrides)
    full.fit()
    _trainer(figures, tmp_path / "part", overrides).fit(stop_after_epoch=stop_after)
    resumed = _trainer(figures, tmp_path / "part", overrides)
    resumed.fit(resume=True)
    a, b = full.model.trainable_state_dict(), resumed.model.trainable_state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert full.averager is not None and resumed.averager is not None
    assert full.averager.n_averaged == resumed.averager.n_averaged
    for key, value in full.averager.tensors.items():
        assert torch.equal(value, resumed.averager.tensors[key]), key
    saved_full, saved_part = load_file(str(tmp_path / "full" / "model.safetensors")), \
        load_file(str(tmp_path / "part" / "model.safetensors"))
    for key, value in saved_full.items():
        assert torch.equal(value, saved_part[key]), key
    rows = [[{k: v for k, v in json.loads(line).items() if not k.startswith("seconds") and "per_second" not in k}
             for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()] for run in ("full", "part")]
    assert rows[0] == rows[1]
    return full, resumed


def test_ema_run_keeps_the_average_and_resumes_bit_for_bit(synth_figures, tmp_path) -> None:
    full, _ = _resumed_equals_uninterrupted(
        synth_figures, tmp_path, ["optim.epochs=3", "optim.weight_averaging=ema", "optim.ema_decay=0.7"], 2)
    rows = full.selection.history
    assert [r["averaged"] for r in rows] == [full.batches_per_epoch * (e + 1) for e in range(3)]
    # what was kept (and saved) is the EMA of the best epoch, not the training weights
    saved = load_file(str(tmp_path / "full" / "model.safetensors"))
    raw = torch.load(tmp_path / "full" / "last_state.pt", weights_only=True)["model"]  # the training weights
    if full.selection.best["epoch"] == 3:
        for name, value in full.averager.tensors.items():
            assert torch.equal(saved[name], value.cpu()), name
    assert all(not torch.equal(saved[n], raw[n]) for n in full.averager.names)


@pytest.mark.slow
def test_swa_on_a_batchnorm_cnn_recomputes_statistics_and_resumes_bit_for_bit(synth_figures, tmp_path) -> None:
    overrides = ["optim.epochs=3", "optim.weight_averaging=swa", "optim.swa_start=0.34", "optim.batch_size=8",
                 "model.backbone=tiny-efficientnet", "model.adaptation=full", "model.input_size=64",
                 "optim.bn_update_figures=24"]
    full, _ = _resumed_equals_uninterrupted(synth_figures, tmp_path, overrides, stop_after=2)
    rows = full.selection.history
    assert [r["averaged"] for r in rows] == [0, 1, 2]  # epoch 1 trains only; epochs 2 and 3 are averaged
    assert full.selection.best["epoch"] in (2, 3)  # an averaged model is kept, never epoch 1
    saved = load_file(str(tmp_path / "full" / "model.safetensors"))
    raw = torch.load(tmp_path / "full" / "last_state.pt", weights_only=True)["model"]  # the training weights
    bn_keys = [k for k in saved if k.endswith("running_mean")]
    assert bn_keys and all(not torch.equal(saved[k], raw[k]) for k in bn_keys)
    # the kept statistics are those recomputed for the kept (averaged) weights over the training figures
    full.model.load_trainable_state_dict(saved)
    full._recompute_bn(full.model)
    now = full.model.state_dict()
    for key in bn_keys:
        torch.testing.assert_close(now[key], saved[key], rtol=0, atol=1e-6)


def test_batchnorm_statistics_are_recomputed_over_the_views_training_saw(synth_figures, tmp_path) -> None:
    """``bn_update_views=train`` passes the figures through the image strategies (with its own fixed seed, so
    that a resume recomputes the same statistics); ``clean`` does not; with no image strategy on, they agree."""
    cnn = ["optim.weight_averaging=swa", "model.backbone=tiny-efficientnet", "model.adaptation=full",
           "model.input_size=64", "optim.batch_size=8", "optim.bn_update_figures=24"]

    def stats(name: str, extra: list[str]) -> dict[str, torch.Tensor]:
        trainer = _trainer(synth_figures, tmp_path / name, [*cnn, *extra])
        trainer._build()  # model and strategies, as fit() makes them
        trainer._recompute_bn(trainer.model)
        return {k: v.clone() for k, v in trainer.model.state_dict().items() if k.endswith("running_mean")}

    train, again, clean = stats("a", []), stats("b", []), stats("c", ["optim.bn_update_views=clean"])
    assert train.keys() == clean.keys() and train
    assert all(torch.equal(train[k], again[k]) for k in train)
    assert any(not torch.allclose(train[k], clean[k]) for k in train)
    plain = ["strategies.augment.enabled=false", "strategies.mixup.enabled=false"]
    off_train, off_clean = stats("d", plain), stats("e", [*plain, "optim.bn_update_views=clean"])
    assert all(torch.equal(off_train[k], off_clean[k]) for k in off_train)
    assert all(torch.equal(off_clean[k], clean[k]) for k in clean)


def test_swa_interrupted_before_it_starts_resumes(synth_figures, tmp_path) -> None:
    overrides = ["optim.epochs=2", "optim.weight_averaging=swa", "optim.swa_start=0.5"]
    first = _trainer(synth_figures, tmp_path / "run", overrides).fit(stop_after_epoch=1)
    assert first.best_epoch == 0 and np.isnan(first.threshold)  # nothing could be kept yet
    result = _trainer(synth_figures, tmp_path / "run", overrides).fit(resume=True)
    assert result.best_epoch == 2


def test_weight_averaging_settings_are_checked() -> None:
    from mitotype.errors import ConfigError

    with pytest.raises(ConfigError, match="weight_averaging"):
        load_config(overrides=["optim.weight_averaging=mean"])
    with pytest.raises(ConfigError, match="ema_decay"):
        load_config(overrides=["optim.ema_decay=1.0"])
    with pytest.raises(ConfigError, match="swa_start"):
        load_config(overrides=["optim.swa_start=1.0"])
    with pytest.raises(ConfigError, match="bn_update_views"):
        load_config(overrides=["optim.bn_update_views=augmented"])
    assert load_config().optim.weight_averaging == "none"
