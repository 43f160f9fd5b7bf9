"""A trained classifier as an ONNX graph run by ONNX Runtime: the fast CPU inference path.

On the CPU stand-in backbones ONNX Runtime runs the same arithmetic about three times faster than eager
PyTorch (``benchmarks/bench_onnx.py``), with logits equal to a few 1e-6. The graph holds the whole
classifier with its own preprocessing (resize to the backbone's input size, normalisation), takes float
RGB in [0, 1] of shape B x 3 x 128 x 128 with any B, and returns the atypical logit per figure, so it
stands in for the PyTorch model wherever only logits are needed (:class:`OnnxClassifier` answers
``model(x).logits`` as :class:`~mitotype.models.classifier.MitoClassifier` does).

``onnxruntime``, ``onnx`` and ``onnxscript`` are an optional extra (``pip install 'mitotype[onnx]'``);
their imports sit inside the functions that need them for that reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mitotype.errors import MitotypeError

ONNX_FILE = "model.onnx"
"""Written beside ``model.safetensors`` by ``mitotype export --onnx``; used by predict when present."""
PATCH_SHAPE = (3, 128, 128)

__all__ = ["ONNX_FILE", "OnnxClassifier", "export_onnx", "onnx_available"]


def onnx_available() -> bool:
    """Whether ONNX Runtime can be imported here."""
    try:
        import onnxruntime  # noqa: F401  (optional extra)
    except ImportError:
        return False
    return True


class _Logits(torch.nn.Module):
    """The classifier reduced to what inference reads: one logit per figure."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images).logits


def export_onnx(model: torch.nn.Module, path: str | Path) -> Path:
    """Write ``model`` (in eval mode, on the CPU) as an ONNX graph with a dynamic batch; returns the path."""
    try:
        import onnx  # noqa: F401  (optional extra; the exporter needs it)
        import onnxscript  # noqa: F401
    except ImportError:
        raise MitotypeError("writing ONNX needs the onnx extra: pip install 'mitotype[onnx]'") from None
    path = Path(path)
    wrapped = _Logits(model.cpu().eval()).eval()
    example = torch.rand(2, *PATCH_SHAPE)
    batch = torch.export.Dim("batch", min=1, max=65536)
    tmp = path.with_name(f".{path.name}.tmp")
    with torch.no_grad():
        program = torch.onnx.export(wrapped, (example,), dynamo=True, input_names=["images"],
                                    output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False)
    program.save(str(tmp))
    os.replace(tmp, path)
    return path


@dataclass
class _Output:
    logits: torch.Tensor


class OnnxClassifier:
    """An exported classifier behind ONNX Runtime that answers ``model(x).logits`` like the PyTorch one."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort  # optional extra
        except ImportError:
            raise MitotypeError("running ONNX models needs the onnx extra: pip install 'mitotype[onnx]'") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for unreadable graphs
            raise MitotypeError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__})") from None
        self.path = Path(path)

    def eval(self) -> OnnxClassifier:
        return self

    def __call__(self, images: torch.Tensor) -> _Output:
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        if x.shape[1:] != PATCH_SHAPE:
            raise MitotypeError(f"{self.path}: the ONNX model takes B x {PATCH_SHAPE} figures, got {x.shape}")
        logits = self.session.run(None, {"images": x})[0]
        return _Output(torch.from_numpy(np.asarray(logits, dtype=np.float32)).reshape(-1))
