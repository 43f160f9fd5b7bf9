"""Weight loading: files, folders, an offline fake Hub cache, and the errors users see."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mitotype.errors import WeightsError
from mitotype.models.registry import (
    count_parameters,
    create_backbone,
    get_backbone_spec,
    meta_state_dict_shapes,
)
from mitotype.models.weights import (
    build_backbone,
    check_weights,
    hub_cache_dir,
    load_weights,
    read_state_dict,
)

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"  # as in conftest.make_fake_hub_cache

SPEC = get_backbone_spec("tiny-vit-reg4")

_UNPICKLED: list[str] = []


def _record(tag: str) -> str:
    _UNPICKLED.append(tag)
    return tag


class NeedsCode:
    """An object whose unpickling would run code (it must never be unpickled)."""

    def __reduce__(self) -> tuple:
        return (_record, ("code ran",))


def _same(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(
        torch.equal(model.state_dict()[k], v.to(model.state_dict()[k].dtype)) for k, v in state.items()
    )


def test_safetensors_file_loads_strictly(tiny_vit_weights: Path) -> None:
    model, report = build_backbone(SPEC, str(tiny_vit_weights))
    assert report is not None and report.ok and report.notes == []
    assert report.num_tensors == len(model.state_dict())
    assert report.dtypes == {"float32": report.num_tensors}
    assert _same(model, read_state_dict(tiny_vit_weights))
    assert all(not p.is_meta for p in model.parameters())
    again = create_backbone(SPEC)
    assert load_weights(again, SPEC, str(tiny_vit_weights)).ok
    assert _same(again, read_state_dict(tiny_vit_weights))


def test_torch_file_with_wrapper_and_prefix_loads(tmp_path: Path, tiny_vit_weights: Path) -> None:
    state = read_state_dict(tiny_vit_weights)
    path = tmp_path / "ckpt.pth"
    torch.save(
        {"epoch": 3, "state_dict": {f"module.{k}": v.to(torch.bfloat16) for k, v in state.items()}}, path
    )
    model, report = build_backbone(SPEC, str(path))
    assert report is not None and report.ok
    assert any("'state_dict'" in n for n in report.notes) and any("'module.'" in n for n in report.notes)
    assert report.dtypes == {"bfloat16": len(state)}
    assert next(model.parameters()).dtype == torch.float32
    assert _same(model, {k: v.to(torch.bfloat16) for k, v in state.items()})


@pytest.mark.parametrize("filename", ["model.safetensors", "pytorch_model.bin"])
def test_folder_is_searched_for_known_filenames(
    tmp_path: Path, tiny_vit_weights: Path, filename: str
) -> None:
    state = read_state_dict(tiny_vit_weights)
    if filename.endswith(".safetensors"):
        save_file(state, str(tmp_path / filename))
    else:
        torch.save(state, tmp_path / filename)
    (tmp_path / "config.json").write_text("{}")
    model, report = build_backbone(SPEC, str(tmp_path))
    assert report is not None and report.path == str(tmp_path / filename)
    assert _same(model, state)


@pytest.mark.parametrize("source", ["hf-hub:acme/tiny-vit", "acme/tiny-vit"])
def test_hub_id_resolves_from_the_local_cache_offline(
    tmp_path: Path, tiny_vit_weights: Path, monkeypatch: pytest.MonkeyPatch, source: str, fake_hub_cache
) -> None:
    cache = tmp_path / "hf" / "hub"
    snapshot = fake_hub_cache(cache, "acme/tiny-vit", {"model.safetensors": tiny_vit_weights})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the Hub must not be contacted when the file is cached")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", no_network)
    model, report = build_backbone(SPEC, source)
    assert report is not None and report.ok
    assert Path(report.path) == snapshot / "model.safetensors"
    assert FAKE_COMMIT in report.path
    assert _same(model, read_state_dict(tiny_vit_weights))


def test_hf_home_locates_the_cache_when_hf_hub_cache_is_unset(
    tmp_path: Path, tiny_vit_weights: Path, monkeypatch: pytest.MonkeyPatch, fake_hub_cache
) -> None:
    torch.save(read_state_dict(tiny_vit_weights), tmp_path / "pytorch_model.bin")
    fake_hub_cache(
        tmp_path / "home" / "hub", "acme/tiny-vit", {"pytorch_model.bin": tmp_path / "pytorch_model.bin"}
    )
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    _, report = build_backbone(SPEC, "hf-hub:acme/tiny-vit")
    assert report is not None and report.path.endswith("pytorch_model.bin")


def test_missing_hub_weights_offline_say_where_and_how(tmp_path: Path) -> None:
    spec = get_backbone_spec("h-optimus-0")
    with pytest.raises(WeightsError) as err:
        build_backbone(spec, None)  # the spec's default: hf-hub:bioptimus/H-optimus-0
    message = str(err.value)
    assert message.startswith("h-optimus-0: no weights found")
    assert "bioptimus/H-optimus-0" in message
    assert str(tmp_path / "empty-hf-cache") in message  # the place searched
    assert "HF_HUB_OFFLINE" in message and "--weights" in message and "\n" not in message


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no such file or folder"):
        build_backbone(SPEC, str(tmp_path / "nope.safetensors"))
    with pytest.raises(WeightsError, match="no weights file in folder"):
        build_backbone(SPEC, str(tmp_path))


def test_mismatched_keys_and_shapes_are_listed(tmp_path: Path, tiny_vit_weights: Path) -> None:
    state = read_state_dict(tiny_vit_weights)
    del state["blocks.1.ls2.gamma"]
    state["mask_token"] = torch.zeros(1, 32)
    state["pos_embed"] = torch.zeros(1, 16, 31)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError) as err:
        build_backbone(SPEC, str(path))
    message = str(err.value)
    assert "1 missing keys (blocks.1.ls2.gamma)" in message
    assert "1 unexpected keys (mask_token)" in message
    assert "pos_embed: checkpoint (1, 16, 31) vs model (1, 16, 32)" in message
    assert "--set model.strict_weights=false" in message  # a setting train has (it has no --no-strict)

    model, report = build_backbone(SPEC, str(path), strict=False)
    assert report is not None and not report.ok
    assert report.missing == ["blocks.1.ls2.gamma"] and report.unexpected == ["mask_token"]
    assert torch.equal(model.state_dict()["cls_token"], state["cls_token"])


def test_long_mismatch_lists_are_truncated(tiny_vit_weights: Path) -> None:
    with pytest.raises(WeightsError) as err:  # a 12-block, 192-wide ViT: raised before allocating it
        build_backbone(get_backbone_spec("timm:vit_tiny_patch16_224"), str(tiny_vit_weights))
    message = str(err.value)
    assert re.search(r"missing keys \(.*, \.\.\. \d+ more\)", message)
    assert re.search(r"shape mismatches \(.*, \.\.\. \d+ more\)", message)
    assert len(message) < 2000


def test_pickle_needing_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "extra": NeedsCode()}, path)
    _UNPICKLED.clear()
    with pytest.raises(WeightsError, match=r"refusing to load .*evil\.pt.*needs code to load \(.*_record\)"):
        build_backbone(SPEC, str(path))
    assert _UNPICKLED == []


def test_non_state_dict_files_are_explained(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsError, match="not a state dict"):
        build_backbone(SPEC, str(path))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00 not a checkpoint")
    with pytest.raises(WeightsError, match=r"cannot read torch file .*junk\.bin: not a valid checkpoint"):
        build_backbone(SPEC, str(junk))
    text = tmp_path / "text.pth"  # a legacy-format read of text fails inside the unpickler (KeyError)
    text.write_text("hello\n")
    with pytest.raises(WeightsError, match=r"cannot read torch file .*text\.pth: not a valid checkpoint"):
        build_backbone(SPEC, str(text))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="cannot read safetensors"):
        build_backbone(SPEC, str(garbage))


def test_position_embedding_for_another_grid_is_resampled(tmp_path: Path) -> None:
    bigger = dataclasses.replace(SPEC, name="tiny-84", timm_kwargs={**SPEC.timm_kwargs, "img_size": 84})
    torch.manual_seed(0)
    state = create_backbone(bigger).state_dict()
    assert state["pos_embed"].shape == (1, 36, 32)  # 6 x 6 grid, no class-token position (no_embed_class)
    path = tmp_path / "grid6.safetensors"
    save_file(state, str(path))
    model, report = build_backbone(SPEC, str(path))
    assert report is not None and report.ok
    assert any("resampled from (1, 36, 32) to (1, 16, 32)" in n for n in report.notes)
    assert model.pos_embed.shape == (1, 16, 32)


def test_check_weights_matches_shapes_without_building_the_model(tiny_vit_weights: Path) -> None:
    report = check_weights(SPEC, str(tiny_vit_weights))
    assert report.ok and report.num_tensors == len(meta_state_dict_shapes(SPEC)) == 35
    assert report.num_elements == count_parameters(SPEC) == 45_140
    assert "missing keys: 0" in report.summary()


def test_any_timm_architecture_with_a_headless_checkpoint(tmp_path: Path) -> None:
    """``timm:<name>`` + own weights; a checkpoint saved without the classifier head is fine (the
    classifier drops the head) and the note says so."""
    from mitotype.models import ModelConfig, build_classifier

    spec = get_backbone_spec("timm:test_vit")
    torch.manual_seed(0)
    state = {k: v for k, v in create_backbone(spec).state_dict().items() if not k.startswith("head.")}
    path = tmp_path / "test_vit.safetensors"
    save_file(state, str(path))
    model = build_classifier(ModelConfig(backbone="timm:test_vit", weights=str(path), adaptation="full"))
    assert model.load_report is not None and model.load_report.ok
    assert any("no classifier head" in n for n in model.load_report.notes)
    assert torch.equal(model.backbone.state_dict()["cls_token"], state["cls_token"])
    out = model.eval()(torch.rand(2, 3, 100, 100))
    assert out.embedding.shape == (2, spec.embed_dim)
