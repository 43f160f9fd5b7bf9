"""AdaBN: BatchNorm statistics re-estimated on target figures, the source model left untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mitotype.errors import MitotypeError
from mitotype.models.adabn import adapt_batchnorm, has_batchnorm


class _Tiny(torch.nn.Module):
    def __init__(self, norm: bool = True) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.norm = torch.nn.BatchNorm2d(4) if norm else torch.nn.GroupNorm(1, 4)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.norm(self.conv(x))).mean((1, 2, 3))


def _images(seed: int, n: int, offset: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(100 + offset, 30, (n, 16, 16, 3)), 0, 255).astype(np.uint8)


def test_adapted_statistics_are_the_targets_and_the_source_is_untouched() -> None:
    torch.manual_seed(0)
    model = _Tiny().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    target = _images(0, 40, offset=80)
    adapted = adapt_batchnorm(model, target, batch_size=8)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with torch.no_grad():
        feats = model.conv(torch.from_numpy(target).permute(0, 3, 1, 2).float() / 255)
    assert torch.allclose(adapted.norm.running_mean, feats.mean((0, 2, 3)), atol=1e-5)
    assert not torch.allclose(adapted.norm.running_mean, model.norm.running_mean, atol=1e-2)
    assert not adapted.training and not adapted.norm.training and not adapted.drop.training
    # the order of figures does not matter (an exact average over batches of equal size)
    shuffled = adapt_batchnorm(model, target, idx=np.random.default_rng(1).permutation(40), batch_size=8)
    assert torch.allclose(shuffled.norm.running_mean, adapted.norm.running_mean, atol=1e-5)


def test_rows_idx_select_the_target_figures() -> None:
    torch.manual_seed(0)
    model = _Tiny().eval()
    images = np.concatenate([_images(0, 20, 0), _images(1, 20, 120)])
    low = adapt_batchnorm(model, images, idx=np.arange(20))
    high = adapt_batchnorm(model, images, idx=np.arange(20, 40))
    assert (high.norm.running_mean - low.norm.running_mean).abs().max() > 0.01


def test_models_without_batchnorm_come_back_unchanged() -> None:
    model = _Tiny(norm=False).eval()
    assert not has_batchnorm(model) and has_batchnorm(_Tiny())
    adapted = adapt_batchnorm(model, _images(0, 8, 0))
    for (k, v), w in zip(model.state_dict().items(), adapted.state_dict().values(), strict=True):
        assert torch.equal(v, w), k


def test_no_target_figures_is_an_error() -> None:
    with pytest.raises(MitotypeError, match="at least one"):
        adapt_batchnorm(_Tiny(), _images(0, 4, 0), idx=np.array([], dtype=int))


def _tiny_cnn_dir(tmp_path):
    from tests.conftest import make_model_dir

    return make_model_dir(tmp_path / "cnn", overrides=["model.backbone=tiny-efficientnet", "model.adaptation=full",
                                                       "model.input_size=64"])


def test_ensemble_adapt_modes_change_scores_and_stack_equals_domain_per_stack(tmp_path) -> None:
    from mitotype.models.predict import load_ensemble

    ensemble, _ = load_ensemble([_tiny_cnn_dir(tmp_path)], device="cpu", runtime="torch")
    images = np.concatenate([_images(0, 16, 0), _images(1, 16, 90)])
    images = np.repeat(np.repeat(images, 8, axis=1), 8, axis=2)  # 128 x 128 patches
    off = ensemble.predict(images, adapt_bn="off")
    domain = ensemble.predict(images, adapt_bn="domain")
    stack = ensemble.predict(images, adapt_bn="stack", stack_size=16)
    assert not np.allclose(off, domain, atol=1e-6) and not np.allclose(domain, stack, atol=1e-6)
    # each stack of 16 adapted alone is the domain mode run on that stack alone
    assert np.allclose(stack[16:], ensemble.predict(images[16:], adapt_bn="domain"), atol=1e-6)
    with pytest.raises(MitotypeError, match="BatchNorm adaptation"):
        ensemble.predict(images, adapt_bn="target")


def _predict_off_and_domain(model, tmp_path, seed: int, n: int, capsys) -> dict[str, tuple[str, str]]:
    """``mitotype predict`` on ``n`` 128 px PNGs with ``--adapt-bn off`` and ``domain``: mode -> (CSV, stdout)."""
    from PIL import Image

    from mitotype.cli.main import main

    folder = tmp_path / "figs"
    folder.mkdir()
    for i, img in enumerate(_images(seed, n, 40)):
        Image.fromarray(np.repeat(np.repeat(img, 8, axis=0), 8, axis=1)).save(folder / f"f{i}.png")
    outs = {}
    for mode in ("off", "domain"):
        out = tmp_path / f"{mode}.csv"
        assert main(["predict", str(folder), "--model", str(model), "--out", str(out), "--adapt-bn", mode]) == 0
        outs[mode] = (out.read_text(), capsys.readouterr().out)
    return outs


def test_predict_cli_takes_adapt_bn(tmp_path, capsys) -> None:
    outs = _predict_off_and_domain(_tiny_cnn_dir(tmp_path), tmp_path, seed=2, n=6, capsys=capsys)
    assert outs["off"][0] != outs["domain"][0]


def test_predict_says_when_adapt_bn_has_nothing_to_adapt(tmp_path, capsys) -> None:
    """A ViT has no BatchNorm: --adapt-bn leaves its scores as they are, and predict says so."""
    from tests.conftest import make_model_dir

    model = make_model_dir(tmp_path / "vit", overrides=["model.backbone=tiny-vit-reg4", "model.input_size=56"])
    outs = _predict_off_and_domain(model, tmp_path, seed=3, n=4, capsys=capsys)
    assert outs["off"][0] == outs["domain"][0]
    assert "changed nothing" not in outs["off"][1]
    assert "--adapt-bn domain changed nothing for 1 model(s) without BatchNorm" in outs["domain"][1]


def test_predict_refuses_adapt_bn_options_that_would_be_ignored(tmp_path, capsys) -> None:
    """AdaBN runs in PyTorch: with ``--runtime onnx`` it is refused rather than silently run in PyTorch, and a
    ``--stack-size`` without ``--adapt-bn stack`` is refused rather than ignored."""
    from mitotype.cli.main import main

    model = _tiny_cnn_dir(tmp_path)
    figure = tmp_path / "f.png"
    from PIL import Image

    Image.fromarray(np.zeros((128, 128, 3), dtype=np.uint8)).save(figure)
    base = ["predict", str(figure), "--model", str(model), "--out", str(tmp_path / "p.csv")]
    assert main([*base, "--adapt-bn", "domain", "--runtime", "onnx"]) == 2
    assert "cannot run under runtime onnx" in capsys.readouterr().err
    for mode in ("off", "domain"):
        assert main([*base, "--adapt-bn", mode, "--stack-size", "8"]) == 2
        assert "--stack-size applies to --adapt-bn stack only" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()
