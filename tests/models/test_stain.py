"""Stain normalisation (inside the model) and stain augmentation (a strategy) through torch-staintools, on
synthetic H&E-like figures made by Beer-Lambert from known stain matrices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("torch_staintools")

from mitotype.errors import ConfigError, MitotypeError
from mitotype.models.stain import StainNormalizer, StainNormSettings
from mitotype.training.strategies.stain_augment import (
    StainAugmentSettings,
    build_stain_augmentor,
    stain_augment,
)

REFERENCE = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]])
"""Ruifrok-Johnston haematoxylin and eosin (rows, optical density per RGB channel)."""
OTHER = torch.tensor([[0.45, 0.80, 0.40], [0.25, 0.92, 0.30]])
"""Another scanner's / lab's H and E: bluer haematoxylin, pinker eosin."""


def _unit(m: torch.Tensor) -> torch.Tensor:
    return m / m.norm(dim=1, keepdim=True)


def he_concentrations(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """n x 2 x size x size stain concentrations: eosin everywhere there is tissue, haematoxylin in nuclei,
    a little bright background."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out = torch.zeros(n, 2, size, size)
    for i in range(n):
        h = torch.zeros(size, size)
        for _ in range(6):
            cy, cx = torch.randint(0, size, (2,), generator=gen)
            r = 3 + 5 * torch.rand(1, generator=gen)
            h += 1.2 * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        e = 0.35 + 0.25 * torch.rand(size, size, generator=gen)
        background = (xx < size // 8).float()  # a strip of glass
        out[i, 0] = h * (1 - background) + 0.05 * torch.rand(size, size, generator=gen)
        out[i, 1] = e * (1 - background)
    return out


def stained(conc: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] from concentrations and a stain matrix (Beer-Lambert: I = exp(-C @ M))."""
    od = torch.einsum("nshw,sc->nchw", conc, _unit(matrix))
    return torch.exp(-od).clamp(0, 1)


def optical_density(rgb: torch.Tensor) -> torch.Tensor:
    return -torch.log(rgb.clamp_min(1 / 255))


def test_normalisation_maps_another_stain_toward_the_reference() -> None:
    norm = StainNormalizer(StainNormSettings(method="macenko"))
    assert not norm.fitted
    with pytest.raises(MitotypeError, match="no reference"):
        norm(torch.rand(1, 3, 8, 8))
    norm.fit(stained(he_concentrations(8, seed=1), REFERENCE))
    assert norm.fitted
    # the fitted H and E directions are the reference's
    cos = (_unit(norm.stain_matrix) * _unit(REFERENCE)).sum(dim=1)
    assert torch.all(cos > 0.98), cos

    conc = he_concentrations(6, seed=2)
    truth = optical_density(stained(conc, REFERENCE))  # the same tissue under the reference stain
    other = stained(conc, OTHER)
    out = norm(other)
    assert out.shape == other.shape and out.dtype == other.dtype and out.min() >= 0 and out.max() <= 1
    before = (optical_density(other) - truth).abs().mean()
    after = (optical_density(out) - truth).abs().mean()
    assert after < 0.6 * before, (float(before), float(after))  # about halved on these figures
    # a figure's result does not depend on its batch
    torch.testing.assert_close(norm(other[2:3]), out[2:3], rtol=0, atol=1e-5)


def test_the_reference_is_part_of_the_trainable_state_and_the_metadata() -> None:
    from mitotype.models.classifier import build_classifier
    from mitotype.training.config import load_config
    from tests.conftest import TINY_OVERRIDES

    config = load_config(overrides=[*TINY_OVERRIDES, "model.stain_norm.method=macenko"])
    model = build_classifier(config.model)
    assert model.stain_norm is not None
    model.stain_norm.fit(stained(he_concentrations(4), REFERENCE))
    state = model.trainable_state_dict()
    assert {"stain_norm.stain_matrix", "stain_norm.max_concentration"} <= set(state)
    assert model.preprocessing["stain_norm"]["method"] == "macenko"
    # no extra tensors, and no change in the preprocessing record, when it is off
    plain = build_classifier(load_config(overrides=TINY_OVERRIDES).model)
    assert plain.stain_norm is None and "stain_norm" not in plain.preprocessing
    assert not any(k.startswith("stain_norm") for k in plain.trainable_state_dict())


def test_onnx_export_is_refused_with_stain_normalisation(tmp_path) -> None:
    from mitotype.models.classifier import build_classifier
    from mitotype.models.onnx_runtime import export_onnx
    from mitotype.training.config import load_config
    from tests.conftest import TINY_OVERRIDES

    model = build_classifier(load_config(overrides=[*TINY_OVERRIDES, "model.stain_norm.method=macenko"]).model)
    with pytest.raises(MitotypeError, match="no ONNX form"):
        export_onnx(model, tmp_path / "model.onnx")


def test_a_missing_extra_is_a_clear_error(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch_staintools" else real(name, *a))
    with pytest.raises(ConfigError, match=r"stain_norm.method = macenko needs torch-staintools.*mitotype\[stain\]"):
        StainNormSettings(method="macenko")
    with pytest.raises(ConfigError, match=r"strategies.stain_augment.enabled = true needs torch-staintools"):
        StainAugmentSettings(enabled=True)
    StainNormSettings()  # off: nothing needed
    StainAugmentSettings()


def test_stain_augmentation_changes_colours_keeps_shape_and_range_and_follows_the_seed() -> None:
    images = stained(he_concentrations(6, seed=3), OTHER)
    augmentor = build_stain_augmentor(StainAugmentSettings(enabled=True, sigma_alpha=0.3, sigma_beta=0.2),
                                      torch.device("cpu"))

    def run(seed: int) -> torch.Tensor:
        return stain_augment(augmentor, images, torch.Generator().manual_seed(seed))

    a, b, c = run(7), run(7), run(8)
    assert a.shape == images.shape and a.dtype == images.dtype
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)  # the same draw, the same figures
    assert not torch.allclose(a, c, atol=1e-3)
    change = (a - images).abs().flatten(1).mean(dim=1)
    assert torch.all(change > 1e-3), change  # every figure re-stained
    # the generator advanced by exactly one draw (what the trainer's later transforms see)
    gen = torch.Generator().manual_seed(7)
    stain_augment(augmentor, images, gen)
    ref = torch.Generator().manual_seed(7)
    torch.randint(0, 2**62, (1,), generator=ref)
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=ref))


def test_off_stain_augmentation_draws_nothing_and_is_left_out_of_default_ablations() -> None:
    from mitotype.training.config import load_config
    from mitotype.training.strategies.base import Batch
    from mitotype.training.strategies.registry import ablation_strategies
    from mitotype.training.strategies.stain_augment import StainAugment

    strategy = StainAugment(StainAugmentSettings(), context=type("Context", (), {"device": torch.device("cpu")})())
    strategy.setup(torch.nn.Identity())
    gen = torch.Generator().manual_seed(0)
    batch = Batch(images=torch.rand(2, 3, 8, 8), targets=torch.zeros(2), domains=torch.zeros(2, dtype=torch.long))
    assert strategy.transform(batch, gen).images is batch.images
    assert torch.equal(torch.rand(2, generator=gen), torch.rand(2, generator=torch.Generator().manual_seed(0)))
    assert "stain_augment" not in ablation_strategies()
    assert len(ablation_strategies()) == 8
    on = load_config(overrides=["strategies.stain_augment.enabled=true"])
    assert ablation_strategies(on.strategies)[-1] == "stain_augment"


def test_a_model_trained_with_stain_normalisation_reloads_and_predicts_identically(synth_figures, tmp_path) -> None:
    from mitotype.evaluation.splits import validation_split
    from mitotype.models.artifact import load_model_artifact
    from mitotype.models.predict import predict_proba
    from mitotype.training.config import load_config
    from mitotype.training.trainer import Trainer
    from tests.conftest import TINY_OVERRIDES

    config = load_config(overrides=[*TINY_OVERRIDES, "optim.epochs=1", "model.stain_norm.method=macenko",
                                    "model.stain_norm.fit_figures=16", "strategies.stain_augment.enabled=true"])
    train_idx, val_idx = validation_split(synth_figures.records, np.arange(len(synth_figures.records)),
                                          fraction=0.25, seed=0)
    trainer = Trainer(config, synth_figures.records, synth_figures.images, train_idx, val_idx, tmp_path / "run")
    trainer.fit()
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    reference = meta["preprocessing"]["stain_norm"]
    assert reference["method"] == "macenko" and np.all(np.isfinite(reference["stain_matrix"]))
    loaded = load_model_artifact(tmp_path / "run")
    assert loaded.model.stain_norm is not None
    assert torch.equal(loaded.model.stain_norm.stain_matrix, trainer.model.stain_norm.stain_matrix)
    images = synth_figures.images[val_idx]
    p_trained = trainer.predict(val_idx)
    p_loaded = predict_proba(loaded.model, images, batch_size=64)
    np.testing.assert_allclose(p_loaded, p_trained, atol=1e-6)
    np.testing.assert_allclose(predict_proba(loaded.model, images, batch_size=64, tta=True),
                               trainer.predict(val_idx, tta=True), atol=1e-6)
