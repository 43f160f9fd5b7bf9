"""What the install holds: the base install classifies with ONNX Runtime; the training extra brings the rest.

``pip install mitotype`` brings numpy, Pillow, ONNX Runtime, tifffile and safetensors; ``pip install
'mitotype[train]'`` adds PyTorch, timm, peft, scikit-learn, matplotlib, PyYAML and tqdm. Code that can do
without a module of the extra asks :func:`importable` first, which looks without importing.
"""

from __future__ import annotations

import importlib.util
import sys

TRAINING_MODULES = frozenset({"torch", "torchvision", "timm", "peft", "huggingface_hub", "sklearn", "scipy", "yaml",
                              "matplotlib", "tqdm"})
"""Top-level modules that come with the training extra."""

__all__ = ["TRAINING_MODULES", "importable", "training_extra_installed"]


def importable(name: str) -> bool:
    """Whether top-level module ``name`` can be imported here, found without importing it (a module set to
    ``None`` in ``sys.modules``, as a test blocks one, counts as missing)."""
    if name in sys.modules:
        return sys.modules[name] is not None
    return importlib.util.find_spec(name) is not None


def training_extra_installed() -> bool:
    """Whether the training extra's modules are all importable."""
    return all(importable(name) for name in ("torch", "torchvision", "timm", "peft", "sklearn", "yaml", "tqdm"))
