"""The textbook cross-check trains the same network on the same split as the tool, or it checks nothing."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def naive() -> ModuleType:
    return load_benchmark("amibr_naive")


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize(("arch", "backbone", "mean", "std"), [
    ("tf_efficientnet_lite0", "efficientnet-lite0-imagenet", (0.5,) * 3, (0.5,) * 3),
    ("efficientnet_lite0", "efficientnet-lite0-imagenet-torch", IMAGENET_MEAN, IMAGENET_STD),
])
def test_naive_network_starts_from_the_tools_pretrained_weights(naive: ModuleType, arch: str, backbone: str,
                                                                mean: tuple, std: tuple) -> None:
    """Each ``--arch`` of the textbook script is one of the tool's backbones: same weights, same input scaling."""
    from mitotype.models.classifier import ModelConfig, build_classifier

    ours = build_classifier(ModelConfig(backbone=backbone, input_size=128)).eval()
    textbook = naive.build_model(arch).eval()
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    scaled = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.inference_mode():
        theirs = textbook.forward_head(textbook.forward_features(scaled), pre_logits=True)
        assert torch.allclose(ours.embed(x), theirs, atol=1e-4)
    assert textbook.get_classifier().out_features == 1


def test_the_two_lite0_variants_share_every_tensor_but_not_the_network(naive: ModuleType) -> None:
    """Same tensors; TF "same" vs symmetric padding and BatchNorm eps 1e-3 vs 1e-5, so the features differ."""
    tf = naive.build_model("tf_efficientnet_lite0").eval()
    torch_variant = naive.build_model("efficientnet_lite0").eval()
    pretrained = [(k, v) for k, v in tf.state_dict().items() if not k.startswith("classifier")]  # new 1-logit head
    other = torch_variant.state_dict()
    assert len(pretrained) == 294 and all(torch.equal(v, other[k]) for k, v in pretrained)
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert not torch.allclose(tf.forward_features(x), torch_variant.forward_features(x), atol=1e-3)


def test_naive_split_is_the_recipe_benchmarks_split(naive: ModuleType, shared_data: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MITOTYPE_SHARED_DATA", str(shared_data))
    recipes = load_benchmark("amibr_recipes")
    config = recipes.recipe_config("plain", seed=1, epochs=None)
    split = recipes.holdout.holdout_split(config, tmp_path / "cache", seed=1)
    figures, train, val, test = split.figures, split.train_idx, split.val_idx, split.test_idx
    records, n_train, n_val, n_test = naive.split(seed=1, val_fraction=config.data.val_fraction)

    def uids(recs: list, idx: np.ndarray) -> set[str]:
        return {recs[i].uid for i in idx}

    assert uids(records, n_test) == uids(figures.records, test) and len(n_test) == 826
    assert uids(records, n_val) == uids(figures.records, val)
    assert uids(records, n_train) == uids(figures.records, train)
    assert not {records[i].group for i in n_val} & {records[i].group for i in n_train}
