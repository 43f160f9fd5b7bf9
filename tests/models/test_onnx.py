"""The ONNX Runtime path: the exported graph gives the PyTorch model's logits, at any batch size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mitotype.errors import MitotypeError
from mitotype.models.artifact import load_model_artifact
from mitotype.models.onnx_runtime import OnnxClassifier, export_onnx
from tests.conftest import make_model_dir

pytest.importorskip("onnxruntime", reason="ONNX Runtime not installed (pip install 'mitotype[onnx]')")


@pytest.mark.slow
def test_exported_graph_matches_pytorch(tmp_path: Path) -> None:
    model = load_model_artifact(make_model_dir(tmp_path / "m", bias=None)).model
    path = export_onnx(model, tmp_path / "m" / "model.onnx")
    onnx_model = OnnxClassifier(path)
    assert onnx_model.eval() is onnx_model
    for batch in (1, 7, 40):  # a dynamic batch: the 8-view TTA batches differ in size
        x = torch.rand(batch, 3, 128, 128, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(x).logits.numpy()
        got = onnx_model(x).logits.numpy()
        assert got.shape == (batch,) and np.abs(got - expected).max() < 1e-4
    with pytest.raises(MitotypeError, match="B x"):
        onnx_model(torch.rand(1, 3, 64, 64))


def test_unreadable_graph_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(MitotypeError, match=r"model\.onnx: ONNX Runtime cannot load it"):
        OnnxClassifier(bad)


@pytest.mark.slow
def test_ensemble_runs_a_current_graph_and_never_a_stale_one(tmp_path: Path, capsys) -> None:
    from mitotype.cli.main import main
    from mitotype.models.predict import load_ensemble

    model_dir = make_model_dir(tmp_path / "m", bias=None)
    images = np.random.default_rng(0).integers(0, 255, (5, 128, 128, 3), dtype=np.uint8)
    torch_ens, _ = load_ensemble([model_dir], device="cpu", runtime="torch")
    with pytest.raises(MitotypeError, match=r"no current model\.onnx"):
        load_ensemble([model_dir], device="cpu", runtime="onnx")[0].predict(images)
    assert main(["models", "onnx", str(model_dir)]) == 0
    assert "model.onnx" in capsys.readouterr().out
    auto, _ = load_ensemble([model_dir], device="cpu")
    assert auto.member_runtime(model_dir) == "onnx"
    for tta in (False, True):
        assert np.abs(auto.predict(images, tta=tta) - torch_ens.predict(images, tta=tta)).max() < 1e-5
    make_model_dir(model_dir, bias=2.0)  # retrained into the same folder: the graph is stale now
    assert load_ensemble([model_dir], device="cpu")[0].member_runtime(model_dir) == "torch"


@pytest.mark.slow
def test_export_packs_graphs_that_the_container_runs(tmp_path: Path) -> None:
    import json
    import tarfile

    import tifffile

    from mitotype.serving.challenge import STACK_SLOT, ChallengePaths, run_challenge
    from mitotype.serving.export import export_model

    model_dir = make_model_dir(tmp_path / "m", bias=None)
    manifest = export_model([model_dir], tmp_path / "model.tar.gz", onnx=True)
    assert manifest["onnx"] is True
    unpacked = tmp_path / "unpacked"
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        assert {"member-0/model.onnx", "member-0/model.onnx.json"} <= set(tar.getnames())
        tar.extractall(unpacked, filter="data")
    folder = tmp_path / "input" / "images" / STACK_SLOT
    folder.mkdir(parents=True)
    pages = np.random.default_rng(2).integers(0, 255, (4, 128, 128, 3), dtype=np.uint8)
    tifffile.imwrite(folder / "s.tiff", pages, photometric="rgb")
    outs = {}
    for runtime in ("onnx", "torch"):
        paths = ChallengePaths(tmp_path / "input", tmp_path / f"out-{runtime}", [unpacked])
        outs[runtime] = json.loads(run_challenge(paths, device="cpu", runtime=runtime).read_text())
    assert max(abs(a["confidence"] - b["confidence"]) for a, b in zip(outs["onnx"], outs["torch"])) < 1e-5
    # the same classes where a figure is clear of the threshold (0.5, so either reading of confidence says
    # which): the two runtimes round differently, on some CPUs enough to decide a figure at 0.5 otherwise
    clear = [abs(e["confidence"] - 0.5) > 1e-4 for e in outs["torch"]]
    assert sum(clear) >= 3
    assert [e["class"] for e, c in zip(outs["onnx"], clear) if c] == [e["class"] for e, c in zip(outs["torch"], clear)
                                                                     if c]
