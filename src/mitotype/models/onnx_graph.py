"""A trained classifier's ONNX graph run by ONNX Runtime on numpy arrays: inference without torch.

The graph (written by :mod:`mitotype.models.onnx_runtime`) holds the whole classifier with its own
preprocessing (resize to the backbone's input size, normalisation); it takes float RGB in [0, 1] of shape
B x 3 x 128 x 128 with any B and returns the atypical logit per figure. ``model.onnx.json`` beside it
records the SHA-256 of the weights it was made from, so a retrained model never runs an old graph. Nothing
here imports torch: this is what the base install (``pip install mitotype``) classifies with.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from mitotype.errors import MissingExtraError, MitotypeError

ONNX_FILE = "model.onnx"
"""Written beside ``model.safetensors`` (``mitotype models onnx``, ``mitotype export --onnx``); used by
predict, evaluate and challenge when present and current."""
SOURCE_FILE = "model.onnx.json"
"""Which ``model.safetensors`` the graph was made from (its SHA-256): a retrained model never runs an old graph."""
PATCH_SHAPE = (3, 128, 128)
RUNTIMES = ("auto", "torch", "onnx")
"""``auto``: ONNX Runtime where a current graph exists and the device is the CPU, else PyTorch."""
GRAPH_BATCH = 16
"""Images per ONNX Runtime call, whatever the caller's batch: its memory arena grows to the largest call, and
the shipped model (resized to 224 px inside the graph) holds about 19 MB of activations per image; 16 keep
a 16-figure stack with 8-view TTA (128 views) near 330 MB peak instead of 1.5 GB; with threads that do not
spin, 16 per call took the time of 64 on 2 busy CPU cores."""

__all__ = ["GRAPH_BATCH", "ONNX_FILE", "PATCH_SHAPE", "RUNTIMES", "SOURCE_FILE", "OnnxSession", "current_graph",
           "onnx_available", "sha256_of"]


def onnx_available() -> bool:
    """Whether ONNX Runtime can be imported here."""
    try:
        import onnxruntime  # noqa: F401  (a base dependency, but an install may lack it)
    except ImportError:
        return False
    return True


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    if not isinstance(source, dict) or source.get("source_sha256") != sha256_of(model_dir / weights_file):
        return None
    return graph


def default_threads() -> int:
    """Intra-op threads: ``OMP_NUM_THREADS`` when set (as PyTorch reads it), else 0, ONNX Runtime's default of
    one per physical core (PyTorch's default too), so both runtimes share the CPU alike."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


class OnnxSession:
    """One exported classifier behind ONNX Runtime: float32 B x 3 x 128 x 128 in [0, 1] -> B logits, run
    ``max_batch`` images per call."""

    def __init__(self, path: str | Path, threads: int | None = None, max_batch: int = GRAPH_BATCH) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingExtraError("running an ONNX model (ONNX Runtime)", "onnx") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = default_threads() if threads is None else threads
        # idle threads sleep instead of spinning (as OMP_WAIT_POLICY=PASSIVE does for PyTorch): on 2 cores shared
        # with a training run, spinning cost 1.5x the CPU time and 1.25x the wall time per figure at GRAPH_BATCH
        # (not measured on an idle machine, where spinning can only win the wake-up latency)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for unreadable graphs
            raise MitotypeError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__})") from None
        self.path = Path(path)
        self.max_batch = max(1, int(max_batch))

    def logits(self, images: np.ndarray) -> np.ndarray:
        """float32 logits, shape (B,), of float32 B x 3 x 128 x 128 images in [0, 1]."""
        x = np.asarray(images, dtype=np.float32)
        if x.shape[1:] != PATCH_SHAPE:
            raise MitotypeError(f"{self.path}: the ONNX model takes B x {PATCH_SHAPE} figures, got {x.shape}")
        out = [np.asarray(self.session.run(None, {"images": np.ascontiguousarray(x[i : i + self.max_batch])})[0],
                          dtype=np.float32).reshape(-1) for i in range(0, len(x), self.max_batch)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
