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

import contextlib
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mitotype.errors import MitotypeError

ONNX_FILE = "model.onnx"
"""Written beside ``model.safetensors`` (``mitotype models onnx``, ``mitotype export --onnx``); used by
predict, evaluate and challenge when present and current."""
SOURCE_FILE = "model.onnx.json"
"""Which ``model.safetensors`` the graph was made from (its SHA-256): a retrained model never runs an old graph."""
PATCH_SHAPE = (3, 128, 128)
RUNTIMES = ("auto", "torch", "onnx")
"""``auto``: ONNX Runtime where a current graph exists and the device is the CPU, else PyTorch."""

__all__ = ["ONNX_FILE", "RUNTIMES", "SOURCE_FILE", "OnnxClassifier", "current_graph", "export_onnx",
           "onnx_available", "write_onnx_beside"]


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
    if getattr(model, "stain_norm", None) is not None:
        raise MitotypeError("a model with stain normalisation (model.stain_norm) has no ONNX form: torch-staintools' "
                            "stain separation does not export; run it with PyTorch (the default runtime)")
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
    # the exporter reports its steps on stdout; only the CLI talks to the terminal
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(wrapped, (example,), dynamo=True, input_names=["images"],
                                    output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False)
    program.save(str(tmp))
    os.replace(tmp, path)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_onnx_beside(model_dir: str | Path, model: torch.nn.Module, target_dir: str | Path | None = None,
                      weights_file: str = "model.safetensors") -> Path:
    """Export ``model`` (loaded from ``model_dir``) as ``model.onnx`` into ``target_dir`` (default: beside its
    weights) with the record of the weights it was made from."""
    model_dir = Path(model_dir)
    target = Path(target_dir) if target_dir is not None else model_dir
    path = export_onnx(model, target / ONNX_FILE)
    record = {"source": weights_file, "source_sha256": _sha256(model_dir / weights_file)}
    tmp = target / f".{SOURCE_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, target / SOURCE_FILE)
    return path


def current_graph(model_dir: str | Path, weights_file: str = "model.safetensors") -> Path | None:
    """``model_dir/model.onnx`` when it exists and was made from the folder's weights as they are now."""
    model_dir = Path(model_dir)
    graph, record = model_dir / ONNX_FILE, model_dir / SOURCE_FILE
    if not (graph.is_file() and record.is_file()):
        return None
    try:
        source = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(source, dict) or source.get("source_sha256") != _sha256(model_dir / weights_file):
        return None
    return graph


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
