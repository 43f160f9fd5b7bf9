"""p(atypical) from ONNX graphs on numpy arrays: the torch-free twin of :class:`mitotype.models.predict.Ensemble`.

It computes what the PyTorch path computes, in the same steps: the same batches (with TTA ``batch_size // 8``
figures, so ``batch_size`` views, per forward), uint8 to float32 in [0, 1] by a division by 255, the 8
dihedral views in :mod:`mitotype.models.views`' order, the sigmoid of each view's logit, the views'
probabilities averaged (not their logits), then the members' probabilities averaged; the threshold is the
members' mean for the way they are applied (:func:`~mitotype.models.metadata.ensemble_threshold`). A test
holds the two paths to the same p within 1e-5 on real figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mitotype.errors import MitotypeError
from mitotype.models.metadata import ensemble_threshold
from mitotype.models.onnx_graph import ONNX_FILE, OnnxSession
from mitotype.models.views import dihedral_mean_np, dihedral_views_np

__all__ = ["OnnxEnsemble", "onnx_predict_proba", "onnx_raw_probabilities"]

_SCALE = np.float32(255.0)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """float32 sigmoid; a logit below about -88 gives 0 (exp overflows to inf), as torch's does."""
    with np.errstate(over="ignore"):
        return (np.float32(1.0) / (np.float32(1.0) + np.exp(-logits))).astype(np.float32)


def onnx_raw_probabilities(session: OnnxSession, images: np.ndarray, batch_size: int = 64,
                           tta: bool = False) -> np.ndarray:
    """float32 p(atypical) for uint8 N x H x W x 3 ``images``, unchecked (the twin of
    :func:`mitotype.models.predict.raw_probabilities`)."""
    if batch_size < 1:
        raise MitotypeError(f"batch size must be at least 1, got {batch_size}")
    out = []
    step = max(1, batch_size // 8) if tta else batch_size
    for start in range(0, len(images), step):
        x = np.asarray(images[start : start + step]).transpose(0, 3, 1, 2).astype(np.float32) / _SCALE
        if tta:
            x = dihedral_views_np(x)
        p = _sigmoid(session.logits(x))
        if tta:
            p = dihedral_mean_np(p, n_views=8)
        out.append(p)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def onnx_predict_proba(session: OnnxSession, images: np.ndarray, batch_size: int = 64,
                       tta: bool = False) -> np.ndarray:
    """float64 p(atypical) for N x H x W x 3 uint8 images, checked as
    :func:`mitotype.models.predict.predict_proba` checks them."""
    probs = onnx_raw_probabilities(session, images, batch_size=batch_size, tta=tta)
    if len(probs) != len(images):
        raise MitotypeError(f"predicted {len(probs)} scores for {len(images)} images")
    if not np.all(np.isfinite(probs)):
        raise MitotypeError("the model produced NaN or infinite scores; refusing to classify")
    return probs.astype(np.float64)


@dataclass
class OnnxEnsemble:
    """Trained models whose current ONNX graphs run in ONNX Runtime on the CPU, probabilities averaged.

    Answers what callers of :class:`mitotype.models.predict.Ensemble` read (``dirs``, ``metas``,
    :meth:`threshold`, :meth:`predict`, ``without_batchnorm``) without importing torch. A one-member ensemble
    keeps its session between calls (a notebook classifying batch after batch); members of a larger one are
    loaded one at a time, as the PyTorch ensemble loads them.
    """

    dirs: list[Path]
    metas: list[dict]
    runtime: str = "auto"
    without_batchnorm: list[Path] = field(default_factory=list)
    """Always empty: BatchNorm adaptation runs in PyTorch only (kept for the callers of both ensembles)."""
    _sessions: dict[Path, OnnxSession] = field(default_factory=dict, repr=False)

    def member_runtime(self, model_dir: Path) -> str:
        """``onnx``: every member runs in ONNX Runtime."""
        return "onnx"

    def threshold(self, tta: bool = False) -> float:
        """The members' mean validation threshold for the way they are applied (with or without TTA)."""
        return ensemble_threshold(self.metas, tta)

    def _session(self, model_dir: Path) -> OnnxSession:
        session = self._sessions.get(model_dir) or OnnxSession(model_dir / ONNX_FILE)
        if len(self.dirs) == 1:
            self._sessions[model_dir] = session
        return session

    def predict(self, images: np.ndarray, batch_size: int = 64, tta: bool = False, precision: str = "auto",
                adapt_bn: str = "off", stack_size: int = 16) -> np.ndarray:
        """Mean p(atypical) of the members (``precision``: the graphs run in fp32 whatever it says)."""
        if batch_size < 1:
            raise MitotypeError(f"batch size must be at least 1, got {batch_size}")
        if adapt_bn != "off":
            raise MitotypeError("BatchNorm adaptation re-estimates statistics in PyTorch; it cannot run on ONNX "
                                "graphs (choose runtime auto or torch)")
        probs = [onnx_predict_proba(self._session(d), images, batch_size, tta) for d in self.dirs]
        return np.mean(probs, axis=0)
