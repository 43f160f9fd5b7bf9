"""Which engine runs trained models: ONNX Runtime without torch where it can, PyTorch where it must.

The base install (``pip install mitotype``) has no torch. :func:`load_predictor` gives an
:class:`~mitotype.models.onnx_ensemble.OnnxEnsemble` (numpy and ONNX Runtime only; torch is never imported)
when every member has a current ``model.onnx``, the runtime allows it, the device is the CPU and nothing
asks for PyTorch (BatchNorm adaptation); otherwise the PyTorch :class:`~mitotype.models.predict.Ensemble`,
or a :class:`~mitotype.errors.MissingExtraError` naming why when torch is not installed. Both compute the
same p (to 1e-5) and the same thresholds, so which one ran changes only the time it took.

``device="auto"`` means CUDA when torch sees a GPU: torch is imported to ask only where a GPU driver is
present and torch is installed, so a CPU machine decides without it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from mitotype.errors import ConfigError, MissingExtraError, MitotypeError
from mitotype.extras import importable
from mitotype.models.device import DEVICE_PATTERN
from mitotype.models.metadata import read_members
from mitotype.models.onnx_ensemble import OnnxEnsemble
from mitotype.models.onnx_graph import RUNTIMES, current_graph, onnx_available

__all__ = ["Predictor", "check_adaptation", "choose_engine", "cuda_may_be_present", "load_predictor",
           "torch_installed"]

_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")
"""Present where an NVIDIA (or ROCm) driver is loaded: without one, torch cannot see a GPU either."""


class Predictor(Protocol):
    """What callers read of an ensemble, whichever engine runs it."""

    dirs: list[Path]
    metas: list[dict]
    without_batchnorm: list[Path]

    def threshold(self, tta: bool = False) -> float: ...

    def predict(self, images: np.ndarray, batch_size: int = 64, tta: bool = False, precision: str = "auto",
                adapt_bn: str = "off", stack_size: int = 16) -> np.ndarray: ...


def torch_installed() -> bool:
    """Whether torch can be imported here (asked of the import system, without importing it)."""
    return importable("torch")


def cuda_may_be_present() -> bool:
    """Whether ``device="auto"`` could mean a GPU: torch is installed and a GPU driver is loaded (Linux), or the
    platform gives no cheap sign (then torch is asked). ``CUDA_VISIBLE_DEVICES`` empty or -1 hides every GPU."""
    if not torch_installed():
        return False
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if sys.platform.startswith("linux"):
        return any(os.path.exists(p) for p in _GPU_DEVICE_FILES)
    return sys.platform != "darwin"  # macOS: torch's "auto" never picks MPS; elsewhere ask torch


def check_adaptation(adapt_bn: str, runtime: str = "auto") -> None:
    """Refuse BatchNorm adaptation where it cannot run, before any model or figure is read: it re-estimates
    statistics in PyTorch, so never under runtime onnx, and never without torch."""
    if adapt_bn == "off":
        return
    if runtime == "onnx":
        raise MitotypeError("BatchNorm adaptation re-estimates statistics in PyTorch; it cannot run under "
                            "runtime onnx (choose runtime auto or torch)")
    if not torch_installed():
        raise MissingExtraError(f"BatchNorm adaptation (adapt-bn {adapt_bn}, in PyTorch)")


def check_device_name(device: str) -> None:
    """Refuse a device name torch would choke on, in one line (as :func:`~mitotype.models.device.resolve_device`)."""
    if not isinstance(device, str) or not DEVICE_PATTERN.fullmatch(device):
        raise ConfigError(f"device {device!r} is not one this tool knows; use auto, cpu, cuda, cuda:N or mps")


def _on_cpu(device: str) -> bool:
    """Whether ``device`` is the CPU, importing torch only when ``auto`` could mean a GPU."""
    check_device_name(device)
    if device == "cpu":
        return True
    if device != "auto":
        return False
    if not cuda_may_be_present():
        return True
    from mitotype.models.device import resolve_device

    return resolve_device("auto").type == "cpu"


def choose_engine(dirs: Sequence[Path], device: str = "auto", runtime: str = "auto", adapt_bn: str = "off") -> str:
    """``onnx`` (torch-free) or ``torch``: the engine for these model folders.

    ``runtime``: ``auto`` runs ONNX Runtime where every member has a current graph and the device is the CPU;
    ``onnx`` insists (an error naming a member without a current graph); ``torch`` always PyTorch.
    """
    if runtime not in RUNTIMES:
        raise MitotypeError(f"unknown runtime {runtime!r}; choose from {list(RUNTIMES)}")
    if runtime == "torch" or adapt_bn != "off" or not _on_cpu(device):
        return "torch"
    missing = [d for d in dirs if current_graph(d) is None]
    if missing or not onnx_available():
        if runtime == "onnx" and missing:
            raise MitotypeError(f"{missing[0]}: no current model.onnx to run (write one with `mitotype models onnx`) "
                                "or ONNX Runtime is not installed (pip install 'mitotype[onnx]')")
        return "torch"
    return "onnx"


def _torch_reason(dirs: Sequence[Path], device: str, runtime: str, adapt_bn: str) -> str:
    """Why a run needs PyTorch, in the words of the option or the model that asks for it."""
    if runtime == "torch":
        return "runtime torch"
    if device not in ("auto", "cpu"):
        return f"device {device}"
    missing = next((d for d in dirs if current_graph(d) is None), None)
    if missing is not None:
        return f"running {missing} (no current model.onnx, so PyTorch runs it)"
    return "running these models"


def load_predictor(paths: Sequence[str | Path], device: str = "auto", base_weights: str | None = None,
                   allow_unfinished: bool = False, runtime: str = "auto", adapt_bn: str = "off") -> Predictor:
    """The models under ``paths`` as one ensemble, run by the engine :func:`choose_engine` picks (members must
    agree on the input size; a run whose training did not finish is refused unless ``allow_unfinished``).
    ``base_weights`` overrides where a PyTorch build finds its backbone weights (a graph holds its own)."""
    if runtime not in RUNTIMES:
        raise MitotypeError(f"unknown runtime {runtime!r}; choose from {list(RUNTIMES)}")
    check_device_name(device)
    check_adaptation(adapt_bn, runtime)
    dirs, metas = read_members(paths, allow_unfinished)
    engine = choose_engine(dirs, device=device, runtime=runtime, adapt_bn=adapt_bn)
    if engine == "onnx":
        return OnnxEnsemble(dirs, metas, runtime)
    if not torch_installed():
        raise MissingExtraError(_torch_reason(dirs, device, runtime, adapt_bn))
    from mitotype.models.predict import load_ensemble

    return load_ensemble(paths, device=device, base_weights=base_weights, allow_unfinished=allow_unfinished,
                         runtime=runtime)[0]
