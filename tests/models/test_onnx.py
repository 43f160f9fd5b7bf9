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
