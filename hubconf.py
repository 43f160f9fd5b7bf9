"""torch.hub entry points: the models that ship with mitotype, loaded from a checkout without network.

    classifier = torch.hub.load("path/to/mitotype", "amibr_effnet_lite0", source="local")
    result = classifier.predict(figures)        # as mitotype.load(); see README "In Python"

Each entry point returns the same :class:`mitotype.Classifier` as ``mitotype.load()`` (ONNX Runtime on the CPU,
without torch, where the model has its graph). The checkout's ``src/`` is used when mitotype is not installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

dependencies = ["numpy", "PIL", "onnxruntime", "safetensors", "tifffile"]
"""What torch.hub checks before calling an entry point (the base install's modules)."""

_SRC = Path(__file__).resolve().parent / "src"


def _mitotype():
    """The mitotype package of this checkout (its ``src/`` first on the path when it is not the one imported)."""
    if str(_SRC) not in sys.path and (_SRC / "mitotype" / "__init__.py").is_file():
        sys.path.insert(0, str(_SRC))
    import mitotype

    return mitotype


def amibr_effnet_lite0(device: str = "auto", runtime: str = "auto"):
    """EfficientNet-Lite0 fine-tuned on the AMi-Br train split at 224 px (the model ``mitotype predict`` uses by
    default; its card: ``src/mitotype/models/shipped/amibr-effnet-lite0-224/MODEL_CARD.md``, for non-commercial
    research). Returns a ``mitotype.Classifier``; ``device`` and ``runtime`` as in ``mitotype.load``."""
    mitotype = _mitotype()
    from mitotype.models.shipped import get_shipped_model

    # by its folder, not its name: a folder of that name in the working directory would be loaded instead
    return mitotype.load(get_shipped_model("amibr-effnet-lite0-224").folder, device=device, runtime=runtime)
