"""p(atypical) for uint8 patches: batched dihedral TTA and fold ensembles.

TTA runs one forward over all 8 dihedral views of a batch (8B images) rather than 8 forwards,
and the ensemble averages probabilities (not logits) across fold models, so every member's
calibration counts equally. The ensemble's threshold is the mean of its members' validation
thresholds (each chosen on that member's own validation slides, with or without TTA as applied).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mitotype.errors import MitotypeError
from mitotype.models.adabn import ADAPT_MODES, adapt_batchnorm, has_batchnorm
from mitotype.models.artifact import load_model_artifact, read_artifact_meta
from mitotype.models.device import autocast_dtype, resolve_device, to_float_batch
from mitotype.models.metadata import (
    ensemble_mean,
    ensemble_threshold,
    find_model_dirs,
    read_members,
    refuse_repeated_members,
    threshold_of,
)
from mitotype.models.onnx_runtime import RUNTIMES, OnnxClassifier, current_graph, onnx_available
from mitotype.models.views import dihedral_mean, dihedral_views


@torch.no_grad()
def raw_probabilities(
    model: torch.nn.Module,
    images: np.ndarray,
    idx: np.ndarray | None = None,
    batch_size: int = 64,
    tta: bool = False,
    device: torch.device | str = "cpu",
    precision: str = "auto",
) -> np.ndarray:
    """float32 p(atypical) for ``images`` (the rows ``idx`` of them, in that order, when given), unchecked.

    The one forward loop of the package: training's validation and hard-example scoring and every
    serving path run through it, so all of them see the same batches and the same numbers.
    """
    if batch_size < 1:
        raise MitotypeError(f"batch size must be at least 1, got {batch_size}")
    device = torch.device(device)
    amp = autocast_dtype(precision, device)
    model.eval()
    out = []
    n = len(images) if idx is None else len(idx)
    step = max(1, batch_size // 8) if tta else batch_size
    for start in range(0, n, step):
        if idx is None:
            x = torch.from_numpy(np.array(images[start : start + step])).to(device)  # a writable copy of the rows
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
        else:
            x = to_float_batch(images, idx[start : start + step], device)
        if tta:
            x = dihedral_views(x)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(x).logits.float()
        p = torch.sigmoid(logits)
        if tta:
            p = dihedral_mean(p, n_views=8)
        out.append(p.cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def predict_proba(
    model: torch.nn.Module,
    images: np.ndarray,
    batch_size: int = 64,
    tta: bool = False,
    device: torch.device | str = "cpu",
    precision: str = "auto",
) -> np.ndarray:
    """p(atypical) for N x H x W x 3 uint8 images; ``tta`` averages the 8 dihedral views in one pass."""
    probs = raw_probabilities(model, images, batch_size=batch_size, tta=tta, device=device, precision=precision)
    if len(probs) != len(images):
        raise MitotypeError(f"predicted {len(probs)} scores for {len(images)} images")
    if not np.all(np.isfinite(probs)):
        raise MitotypeError("the model produced NaN or infinite scores; refusing to classify")
    return probs.astype(np.float64)


MIN_ADAPT_FIGURES = 8
"""The fewest figures ``--adapt-bn stack`` re-estimates BatchNorm statistics on: with fewer, a stack's own
statistics decide its scores more than its figures do, and the scores stop following those of the whole input
adapted at once (how far they follow, stack size by stack size: docs/results.md, "Levers for unseen scanners")."""


@dataclass
class Ensemble:
    """Trained models whose probabilities are averaged, loaded one at a time.

    Only one member is on the device at any moment, so an ensemble of fold models needs the memory of
    one backbone (what ``mitotype export`` checks against the platform's GPU), not of all of them.
    """

    dirs: list[Path]
    metas: list[dict]
    device: torch.device
    base_weights: str | None = None
    runtime: str = "auto"
    """``auto``: a member with a current ``model.onnx`` runs in ONNX Runtime on the CPU (same logits to
    ~1e-6, about 3x faster), the others in PyTorch; ``torch``: always PyTorch; ``onnx``: ONNX Runtime or an
    error."""
    without_batchnorm: list[Path] = field(default_factory=list)
    """Members that the last :meth:`predict` with ``adapt_bn`` could not adapt (no BatchNorm: a ViT), so that
    the caller can say the adaptation asked for changed nothing."""

    def member_runtime(self, model_dir: Path) -> str:
        """``onnx`` or ``torch``: how :meth:`predict` runs this member."""
        if self.runtime == "torch" or self.device.type != "cpu":
            if self.runtime == "onnx":
                raise MitotypeError(f"runtime onnx runs on the CPU only, not on {self.device}")
            return "torch"
        if current_graph(model_dir) is not None and onnx_available():
            return "onnx"
        if self.runtime == "onnx":
            raise MitotypeError(f"{model_dir}: no current model.onnx to run (write one with `mitotype models onnx`) "
                                "or ONNX Runtime is not installed (pip install 'mitotype[onnx]')")
        return "torch"

    def threshold(self, tta: bool = False, calibrated: bool = True) -> float:
        """The members' mean validation threshold for the way they are applied (with or without TTA), on the
        scale :meth:`predict` reports (calibrated unless ``calibrated`` is false or a member has no map)."""
        return ensemble_threshold(self.metas, tta, calibrated)

    def predict(self, images: np.ndarray, batch_size: int = 64, tta: bool = False,
                precision: str = "auto", adapt_bn: str = "off", stack_size: int = 16,
                calibrated: bool = True) -> np.ndarray:
        """Mean p(atypical) of the members, each through its calibration map where every member has one
        (``calibrated``). ``adapt_bn`` (:mod:`mitotype.models.adabn`): ``domain`` re-estimates BatchNorm
        statistics on all of ``images`` (one unseen domain), ``stack`` on each consecutive group of
        ``stack_size`` of them; it runs the members in PyTorch."""
        if batch_size < 1:
            raise MitotypeError(f"batch size must be at least 1, got {batch_size}")
        if adapt_bn not in ADAPT_MODES:
            raise MitotypeError(f"unknown BatchNorm adaptation {adapt_bn!r}; choose from {list(ADAPT_MODES)}")
        if adapt_bn != "off" and self.runtime == "onnx":
            raise MitotypeError("BatchNorm adaptation re-estimates statistics in PyTorch; it cannot run under "
                                "runtime onnx (choose runtime auto or torch)")
        if adapt_bn != "off":
            adaptation_stacks(len(images), adapt_bn, stack_size)  # a refused stack size before any model loads
        probs = []
        self.without_batchnorm = []
        for d in self.dirs:
            if adapt_bn == "off" and self.member_runtime(d) == "onnx":
                model = OnnxClassifier(d / "model.onnx")
            else:
                model = load_model_artifact(d, base_weights=self.base_weights, device=self.device).model
            if adapt_bn == "off":
                probs.append(predict_proba(model, images, batch_size, tta, self.device, precision))
            else:
                if not has_batchnorm(model):
                    self.without_batchnorm.append(d)
                probs.append(_adapted_proba(model, images, batch_size, tta, self.device, precision, adapt_bn,
                                            stack_size))
            del model
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        return ensemble_mean(self.metas, probs, tta, calibrated)


def adaptation_stacks(n: int, mode: str, stack_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each group of figures whose BatchNorm statistics are re-estimated together: all of
    them (``domain``), or consecutive stacks of ``stack_size`` (``stack``), a last stack shorter than
    :data:`MIN_ADAPT_FIGURES` joining the one before it."""
    if mode == "domain":
        return [(0, n)] if n else []
    if stack_size < MIN_ADAPT_FIGURES:
        raise MitotypeError(f"--adapt-bn stack needs at least {MIN_ADAPT_FIGURES} figures per stack, got "
                            f"--stack-size {stack_size}: BatchNorm statistics of fewer figures are noise, and of "
                            "one figure they give every figure nearly the same score")
    bounds = [(start, min(start + stack_size, n)) for start in range(0, n, stack_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < MIN_ADAPT_FIGURES:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def _adapted_proba(model: torch.nn.Module, images: np.ndarray, batch_size: int, tta: bool, device: torch.device,
                   precision: str, mode: str, stack_size: int) -> np.ndarray:
    """p(atypical) with BatchNorm statistics re-estimated on the whole input or on each stack of it."""
    out = []
    for start, stop in adaptation_stacks(len(images), mode, stack_size):
        part = images[start:stop]
        adapted = adapt_batchnorm(model, part, batch_size=batch_size, device=device)
        out.append(predict_proba(adapted, part, batch_size, tta, device, precision))
    return np.concatenate(out) if out else np.zeros(0)


def load_ensemble(paths: Sequence[str | Path], device: str = "auto", base_weights: str | None = None,
                  allow_unfinished: bool = False, runtime: str = "auto") -> tuple[Ensemble, torch.device]:
    """The models under ``paths`` as one ensemble (members must agree on the input size); a run folder
    whose training did not finish is refused unless ``allow_unfinished``. ``runtime``: see :class:`Ensemble`."""
    if runtime not in RUNTIMES:
        raise MitotypeError(f"unknown runtime {runtime!r}; choose from {list(RUNTIMES)}")
    dev = resolve_device(device)
    dirs, metas = read_members(paths, allow_unfinished, read_meta=read_artifact_meta)
    return Ensemble(dirs, metas, dev, base_weights, runtime), dev


__all__ = [
    "MIN_ADAPT_FIGURES",
    "Ensemble",
    "adaptation_stacks",
    "ensemble_threshold",
    "find_model_dirs",
    "load_ensemble",
    "predict_proba",
    "raw_probabilities",
    "refuse_repeated_members",
    "threshold_of",
]
