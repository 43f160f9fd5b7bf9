"""The torch-free ONNX path gives the p and thresholds of the PyTorch path, and is chosen only where it can run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mitotype.errors import ConfigError, MissingExtraError, MitotypeError
from mitotype.models.inference import choose_engine, cuda_may_be_present, load_predictor
from mitotype.models.onnx_ensemble import OnnxEnsemble
from mitotype.models.predict import Ensemble, load_ensemble
from mitotype.models.shipped import get_shipped_model
from mitotype.models.views import (
    dihedral,
    dihedral_mean,
    dihedral_mean_np,
    dihedral_np,
    dihedral_views,
    dihedral_views_np,
)
from tests.conftest import REPO_ROOT, make_model_dir

pytest.importorskip("onnxruntime", reason="ONNX Runtime not installed")


def test_numpy_views_are_the_torch_views_in_the_same_order() -> None:
    x = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    for k in range(8):
        np.testing.assert_array_equal(dihedral_np(x.numpy(), k), dihedral(x, k).numpy())
    views = dihedral_views_np(x.numpy())
    np.testing.assert_array_equal(views, dihedral_views(x).numpy())
    assert views.flags.c_contiguous and len({views[v * 3].tobytes() for v in range(8)}) == 8  # 8 distinct views
    scores = torch.rand(24, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(dihedral_mean_np(scores.numpy()), dihedral_mean(scores).numpy(), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="square"):
        dihedral_views_np(np.zeros((1, 3, 4, 5), np.float32))
    with pytest.raises(ValueError, match="multiple of 8"):
        dihedral_mean_np(np.zeros(9))


@pytest.fixture(scope="module")
def amibr_images(shared_data: Path) -> np.ndarray:
    """40 real AMi-Br patches, normal and atypical."""
    files = [p for kind in ("normal", "atypical")
             for p in sorted((shared_data / "amibr" / "patches" / kind).glob("*.png"))[:20]]
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


@pytest.mark.shared
@pytest.mark.slow
def test_the_shipped_model_gives_todays_p_without_torch(amibr_images: np.ndarray) -> None:
    folder = get_shipped_model().folder
    light = load_predictor([folder], device="cpu")
    assert isinstance(light, OnnxEnsemble)
    today, _ = load_ensemble([folder], device="cpu")  # the graph run behind the PyTorch model's interface
    eager, _ = load_ensemble([folder], device="cpu", runtime="torch")
    for tta, batch in ((False, 64), (True, 64), (True, 24)):
        p = light.predict(amibr_images, batch_size=batch, tta=tta)
        assert p.dtype == np.float64 and p.shape == (len(amibr_images),)
        assert np.abs(p - today.predict(amibr_images, batch_size=batch, tta=tta)).max() < 1e-5
        assert np.abs(p - eager.predict(amibr_images, batch_size=batch, tta=tta)).max() < 1e-4
        assert light.threshold(tta) == today.threshold(tta)
    assert light.threshold(True) != light.threshold(False)


@pytest.fixture(scope="module")
def two_graphs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny trained models with current ONNX graphs and their own thresholds."""
    pytest.importorskip("onnxscript", reason="writing ONNX needs the onnx extra")
    from mitotype.models.artifact import load_model_artifact
    from mitotype.models.onnx_runtime import write_onnx_beside

    root = tmp_path_factory.mktemp("folds")
    dirs = []
    for i, (bias, threshold) in enumerate(((0.3, 0.4), (-0.2, 0.6))):
        model_dir = make_model_dir(root / f"fold{i}" / "model", bias=bias, threshold=threshold)
        write_onnx_beside(model_dir, load_model_artifact(model_dir).model)
        dirs.append(model_dir)
    return dirs


@pytest.mark.slow
def test_a_fold_ensemble_of_graphs_runs_without_torch_as_pytorch_runs_it(two_graphs: list[Path]) -> None:
    images = np.random.default_rng(0).integers(0, 255, (11, 128, 128, 3), dtype=np.uint8)
    light = load_predictor([two_graphs[0].parent.parent], device="cpu")  # the folds' folder: found below
    assert isinstance(light, OnnxEnsemble) and light.dirs == two_graphs
    eager, _ = load_ensemble(two_graphs, device="cpu", runtime="torch")
    for tta in (False, True):
        assert np.abs(light.predict(images, batch_size=16, tta=tta) - eager.predict(images, batch_size=16,
                                                                                      tta=tta)).max() < 1e-5
    assert light.threshold() == pytest.approx(0.5) == eager.threshold()


@pytest.mark.slow
def test_an_exported_tarball_of_graphs_runs_without_torch(two_graphs: list[Path], tmp_path: Path) -> None:
    import mitotype
    from mitotype.serving.export import export_model

    export_model(two_graphs, tmp_path / "model.tar.gz", onnx=True)
    classifier = mitotype.load(tmp_path / "model.tar.gz", device="cpu")
    assert classifier.engine == "onnx" and len(classifier.models) == 2
    images = np.random.default_rng(1).integers(0, 255, (5, 128, 128, 3), dtype=np.uint8)
    eager, _ = load_ensemble(two_graphs, device="cpu", runtime="torch")
    got = classifier.predict(images, tta=True)
    assert np.abs(got.p_atypical - eager.predict(images, tta=True)).max() < 1e-5
    assert got.threshold == pytest.approx(eager.threshold(True))
    unpacked = classifier.models[0].parent
    del classifier, got
    import gc

    gc.collect()
    assert not unpacked.exists()  # the unpacked tarball goes with the classifier
    np.save(tmp_path / "images.npy", images)
    script = ("import sys, json, numpy as np\n"
              "from mitotype.extras import TRAINING_MODULES\n"
              "for name in TRAINING_MODULES: sys.modules[name] = None\n"  # the base install: no torch at all
              "import mitotype\n"
              f"result = mitotype.load({str(tmp_path / 'model.tar.gz')!r}).predict("
              f"np.load({str(tmp_path / 'images.npy')!r}), tta=True)\n"
              "print(json.dumps(result.p_atypical.tolist()))")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.abs(np.array(json.loads(proc.stdout)) - eager.predict(images, tta=True)).max() < 1e-5


def test_the_engine_is_pytorch_where_a_graph_cannot_run(tmp_path: Path, monkeypatch) -> None:
    shipped = get_shipped_model().folder
    copy = tmp_path / "copy"
    shutil.copytree(shipped, copy)
    assert choose_engine([copy], device="cpu") == "onnx"
    assert choose_engine([copy], device="cpu", runtime="torch") == "torch"
    assert choose_engine([copy], device="cpu", adapt_bn="stack") == "torch"
    assert choose_engine([copy], device="cuda") == "torch"
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes()[:-2] + b"  ")  # retrained
    assert choose_engine([copy], device="cpu") == "torch"
    with pytest.raises(MitotypeError, match=r"copy: no current model\.onnx to run"):
        choose_engine([shipped, copy], device="cpu", runtime="onnx")
    with pytest.raises(ConfigError, match="device 'gpu0' is not one this tool knows"):
        choose_engine([shipped], device="gpu0")
    plain = make_model_dir(tmp_path / "plain")
    assert isinstance(load_predictor([plain], device="cpu"), Ensemble)
    monkeypatch.setitem(sys.modules, "torch", None)  # the base install
    with pytest.raises(MissingExtraError, match=r"plain \(no current model\.onnx, so PyTorch runs it\) needs the "
                       r"training extra: pip install 'mitotype\[train\]'$"):
        load_predictor([plain], device="cpu")
    with pytest.raises(MissingExtraError, match=r"^BatchNorm adaptation \(adapt-bn domain, in PyTorch\)"):
        load_predictor([shipped], device="cpu", adapt_bn="domain")
    assert isinstance(load_predictor([shipped]), OnnxEnsemble)  # auto: no torch, so no GPU to ask about


def test_auto_asks_torch_about_a_gpu_only_where_a_driver_is_loaded(monkeypatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("os.path.exists", lambda path: False)
    assert not cuda_may_be_present()
    monkeypatch.setattr("os.path.exists", lambda path: path == "/dev/nvidiactl")
    assert cuda_may_be_present()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not cuda_may_be_present()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setitem(sys.modules, "torch", None)
    assert not cuda_may_be_present()
