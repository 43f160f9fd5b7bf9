"""Backbones, weights, LoRA and the classifier.

Attributes are imported lazily so that ``import mitotype.models.registry`` (the CLI, configuration
validation) does not pull in torch, timm and peft.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BackboneSpec": "registry",
    "register_backbone": "registry",
    "get_backbone_spec": "registry",
    "list_backbones": "registry",
    "count_parameters": "registry",
    "create_backbone": "registry",
    "LoadReport": "weights",
    "build_backbone": "weights",
    "check_weights": "weights",
    "load_weights": "weights",
    "read_state_dict": "weights",
    "LoraSettings": "adaptation",
    "AdaptationReport": "adaptation",
    "ADAPTATION_MODES": "adaptation",
    "ModelConfig": "classifier",
    "ClassifierOutput": "classifier",
    "MitoClassifier": "classifier",
    "GradientReversal": "classifier",
    "build_classifier": "classifier",
    "reverse_gradient": "classifier",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
