"""Where a model runs and in which precision, and how uint8 patches become its input batch.

Shared by training and serving, so that both feed a model exactly the same tensors. torch is imported by the
functions that need it, so that the ONNX Runtime path can check a device name without it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from mitotype.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|mps")
"""The devices a user may name (``--device``, ``optim.device``)."""


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else the CPU. A name torch does not know (``gpu0``), a CUDA device
    this machine lacks or an absent MPS is refused here, in one line, rather than deep inside torch."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not DEVICE_PATTERN.fullmatch(name):
        raise ConfigError(f"device {name!r} is not one this tool knows; use auto, cpu, cuda, cuda:N or mps")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but this machine has no CUDA device (use auto or cpu)")
        count = torch.cuda.device_count()
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            raise ConfigError(f"device {name!r} asked for, but this machine has {count} CUDA device(s): "
                              f"cuda:0..cuda:{count - 1}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' asked for, but this machine has no Apple GPU (use auto or cpu)")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for this precision setting, or ``None`` for plain fp32."""
    import torch

    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def to_float_batch(images: np.ndarray, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    """Gather uint8 N x H x W x 3 rows into a float B x 3 x H x W batch in [0, 1] on ``device``."""
    import torch

    order = np.argsort(idx, kind="stable")
    rows = np.empty((len(idx), *images.shape[1:]), dtype=np.uint8)
    rows[order] = images[np.asarray(idx)[order]]  # sorted reads are kinder to the memory map
    batch = torch.from_numpy(rows).to(device, non_blocking=True)
    return batch.permute(0, 3, 1, 2).float().div_(255.0)


__all__ = ["DEVICE_PATTERN", "autocast_dtype", "resolve_device", "to_float_batch"]
