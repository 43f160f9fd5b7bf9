"""A trained classifier as an ONNX graph run by ONNX Runtime: the fast CPU inference path.

On the CPU stand-in backbones ONNX Runtime runs the same arithmetic faster than eager
PyTorch (``benchmarks/bench_cpu_inference.py``), with logits equal to a few 1e-6. The graph holds the whole
classifier with its own preprocessing (resize to the backbone's input size, normalisation), takes float
RGB in [0, 1] of shape B x 3 x 128 x 128 with any B, and returns the atypical logit per figure, so it
stands in for the PyTorch model wherever only logits are needed (:class:`OnnxClassifier` answers
``model(x).logits`` as :class:`~mitotype.models.classifier.MitoClassifier` does).

This is the PyTorch side (export, and the graph behind the PyTorch model's interface); running a graph on
numpy arrays without torch is :mod:`mitotype.models.onnx_graph`. ``onnx`` and ``onnxscript`` (writing graphs)
are the onnx extra (``pip install 'mitotype[onnx]'``); their imports sit inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mitotype.errors import MitotypeError
from mitotype.models.onnx_graph import (
    ONNX_FILE,
    PATCH_SHAPE,
    RUNTIMES,
    SOURCE_FILE,
    OnnxSession,
    current_graph,
    onnx_available,
    sha256_of,
)

__all__ = ["ONNX_FILE", "RUNTIMES", "SOURCE_FILE", "OnnxClassifier", "current_graph", "export_onnx",
           "onnx_available", "write_onnx_beside"]


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


def write_onnx_beside(model_dir: str | Path, model: torch.nn.Module, target_dir: str | Path | None = None,
                      weights_file: str = "model.safetensors") -> Path:
    """Export ``model`` (loaded from ``model_dir``) as ``model.onnx`` into ``target_dir`` (default: beside its
    weights) with the record of the weights it was made from."""
    model_dir = Path(model_dir)
    target = Path(target_dir) if target_dir is not None else model_dir
    path = export_onnx(model, target / ONNX_FILE)
    record = {"source": weights_file, "source_sha256": sha256_of(model_dir / weights_file)}
    tmp = target / f".{SOURCE_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, target / SOURCE_FILE)
    return path


@dataclass
class _Output:
    logits: torch.Tensor


class OnnxClassifier:
    """An exported classifier behind ONNX Runtime that answers ``model(x).logits`` like the PyTorch one
    (:class:`~mitotype.models.onnx_graph.OnnxSession` on torch tensors)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.runner = OnnxSession(path, threads=threads or torch.get_num_threads())
        self.session = self.runner.session
        self.path = self.runner.path

    def eval(self) -> OnnxClassifier:
        return self

    def __call__(self, images: torch.Tensor) -> _Output:
        logits = self.runner.logits(images.detach().to("cpu", torch.float32).contiguous().numpy())
        return _Output(torch.from_numpy(np.asarray(logits, dtype=np.float32)).reshape(-1))
