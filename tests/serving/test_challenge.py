"""The challenge container entry point, export, predict and batched TTA."""

from __future__ import annotations

import json
import shutil
import tarfile

import numpy as np
import pytest
import tifffile
import torch

from mitotype.cli.main import main
from mitotype.errors import MitotypeError
from mitotype.models.artifact import load_model_artifact
from mitotype.models.predict import predict_proba
from mitotype.models.views import dihedral
from mitotype.serving.challenge import OUTPUT_NAME, STACK_SLOT, ChallengePaths, run_challenge
from mitotype.serving.export import export_model
from mitotype.serving.outputs import validate_output
from tests.conftest import make_model_dir


def _stack_input(root, pages):
    folder = root / "input" / "images" / STACK_SLOT
    folder.mkdir(parents=True)
    tifffile.imwrite(folder / "stack_1.tiff", pages, photometric="rgb")
    return root / "input"


def _paths(tmp_path, input_dir, model_dir):
    return ChallengePaths(input_dir=input_dir, output_dir=tmp_path / "output", model_dirs=[model_dir])


@pytest.fixture(scope="module")
def pages():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(5, 128, 128, 3), dtype=np.uint8)


def test_real_stack_gives_16_valid_entries(shared_data, tmp_path):
    model = make_model_dir(tmp_path / "model", threshold=0.5)
    input_dir = shared_data / "midog25_t2_stack" / "input"
    out = run_challenge(_paths(tmp_path, input_dir, model), device="cpu")
    entries = json.loads(out.read_text())
    assert len(entries) == 16
    validate_output(entries, 16, out)
    raw = out.read_text()
    assert all(isinstance(e["confidence"], float) for e in entries)
    assert '"confidence": 0,' not in raw and '"confidence": 1,' not in raw


@pytest.mark.parametrize(("bias", "expected"), [(8.0, "atypical"), (-8.0, "normal")])
def test_confidence_is_p_atypical_whatever_the_class(tmp_path, pages, bias, expected):
    model = make_model_dir(tmp_path / "model", bias=bias, threshold=0.5)
    out = run_challenge(_paths(tmp_path, _stack_input(tmp_path, pages), model), device="cpu", tta=False)
    entries = json.loads(out.read_text())
    assert [e["class"] for e in entries] == [expected] * len(pages)
    for e in entries:  # a sure atypical call is p near 1, a sure normal call p near 0
        assert (e["confidence"] > 0.99) if expected == "atypical" else (e["confidence"] < 0.01)


def test_class_follows_the_stored_threshold(tmp_path, pages):
    # p(atypical) ~ 0.73 everywhere: atypical at threshold 0.5, normal at 0.9; confidence stays p either way.
    for threshold, expected in ((0.9, "normal"), (0.5, "atypical")):
        model = make_model_dir(tmp_path / f"model{threshold}", bias=1.0, threshold=threshold)
        out = run_challenge(_paths(tmp_path, _stack_input(tmp_path / str(threshold), pages), model), device="cpu",
                            tta=False)
        entries = json.loads(out.read_text())
        assert all(e["class"] == expected and 0.7 < e["confidence"] < 0.76 for e in entries)


def test_nan_scores_are_an_error_and_nothing_is_written(tmp_path, pages):
    model_dir = make_model_dir(tmp_path / "model")
    from safetensors.torch import load_file, save_file

    from mitotype.models.artifact import MODEL_FILE

    path = model_dir / MODEL_FILE
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    state = load_file(str(path))
    for key in state:
        if key.startswith("head."):
            state[key] = torch.full_like(state[key], float("nan"))
    save_file(state, str(path), metadata=meta)
    with pytest.raises(MitotypeError, match="NaN"):
        run_challenge(_paths(tmp_path, _stack_input(tmp_path, pages), model_dir), device="cpu")
    assert not (tmp_path / "output" / OUTPUT_NAME).exists()


def _cli(tmp_path, input_dir, model_dir, capsys):
    code = main(["challenge", "--input-dir", str(input_dir), "--output-dir", str(tmp_path / "output"),
                 "--model-dir", str(model_dir), "--device", "cpu"])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no-file", "no .tif"),
        ("two-files", "2"),
        ("zero-pages", "page"),
        ("17-pages", "16"),
        ("grayscale", "RGB"),
        ("wrong-size", "128"),
        ("corrupt", "stack_1.tiff"),
    ],
)
def test_bad_input_exits_nonzero_without_output(tmp_path, pages, capsys, case, message):
    model = make_model_dir(tmp_path / "model")
    folder = tmp_path / "input" / "images" / STACK_SLOT
    folder.mkdir(parents=True)
    if case == "two-files":
        tifffile.imwrite(folder / "a.tif", pages, photometric="rgb")
        tifffile.imwrite(folder / "b.tif", pages, photometric="rgb")
    elif case == "zero-pages":
        (folder / "stack_1.tiff").write_bytes(b"II*\x00\x00\x00\x00\x00")
    elif case == "17-pages":
        tifffile.imwrite(folder / "stack_1.tiff", np.zeros((17, 128, 128, 3), np.uint8), photometric="rgb")
    elif case == "grayscale":
        tifffile.imwrite(folder / "stack_1.tiff", np.zeros((3, 128, 128), np.uint8), photometric="minisblack")
    elif case == "wrong-size":
        tifffile.imwrite(folder / "stack_1.tiff", np.zeros((3, 96, 96, 3), np.uint8), photometric="rgb")
    elif case == "corrupt":
        (folder / "stack_1.tiff").write_bytes(b"this is not a tiff at all")
    code, err = _cli(tmp_path, tmp_path / "input", model, capsys)
    assert code == 2
    assert err.startswith("error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "output" / OUTPUT_NAME).exists()


def test_model_folder_missing_a_part(tmp_path, pages, capsys):
    input_dir = _stack_input(tmp_path, pages)
    code, err = _cli(tmp_path, input_dir, tmp_path / "empty", capsys)
    assert code == 2 and "no exported model found" in err
    model = make_model_dir(tmp_path / "m")
    export_model([model], tmp_path / "model.tar.gz")
    unpacked = tmp_path / "opt-ml-model"
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        tar.extractall(unpacked, filter="data")
    shutil.rmtree(unpacked / "member-0")
    (unpacked / "member-0").mkdir()
    code, err = _cli(tmp_path, input_dir, unpacked, capsys)
    assert code == 2 and "member-0/model.safetensors" in err and "missing" in err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"tta": "no"}, "'tta' must be true or false, got 'no'"),  # a truthy string would turn TTA on
        ({"base_weights": 7}, "'base_weights' must be a path"),
        ({"members": [3]}, "'members' must name folders inside"),
        ({"members": ["../elsewhere"]}, "'members' must name folders inside"),
    ],
    ids=["tta-text", "base-weights-number", "member-number", "member-outside"],
)
def test_hand_edited_manifest_is_one_line(tmp_path, pages, capsys, edit, message):
    """These used to end in a TypeError/AttributeError traceback, or run with TTA on for ``"tta": "no"``."""
    input_dir = _stack_input(tmp_path, pages)
    root = tmp_path / "opt-ml-model"
    make_model_dir(root / "member-0")
    (root / "mitotype-export.json").write_text(json.dumps({"members": ["member-0"], **edit}))
    code, err = _cli(tmp_path, input_dir, root, capsys)
    assert code == 2 and "Traceback" not in err
    assert message in err
    assert err.startswith(f"error: {root / 'mitotype-export.json'}: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "output" / OUTPUT_NAME).exists()


def test_export_then_container_run(tmp_path, pages):
    a = make_model_dir(tmp_path / "fold-a", bias=2.0, threshold=0.4)
    b = make_model_dir(tmp_path / "fold-b", bias=-2.0, threshold=0.6)
    manifest = export_model([a, b], tmp_path / "model.tar.gz", tta=True)
    assert manifest["members"] == ["member-0", "member-1"]
    assert manifest["threshold"] == pytest.approx(0.5)
    unpacked = tmp_path / "opt-ml-model"
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        names = tar.getnames()
        tar.extractall(unpacked, filter="data")
    assert "mitotype-export.json" in names and "member-1/model.safetensors" in names
    out = run_challenge(_paths(tmp_path, _stack_input(tmp_path, pages), unpacked), device="cpu")
    entries = json.loads(out.read_text())
    # The ensemble averages sigmoid(2) and sigmoid(-2): exactly 0.5 -> atypical at threshold 0.5.
    assert all(e["confidence"] == pytest.approx(0.5, abs=1e-6) for e in entries)


def test_export_of_a_random_weight_model_runs_in_the_container(tmp_path, pages):
    # benchmarks train on random base weights; the export must say so rather than point at a file
    model = make_model_dir(tmp_path / "fold", bias=3.0, overrides=["model.weights=random"])
    manifest = export_model([model], tmp_path / "model.tar.gz", tta=False)
    assert manifest["base_weights"] == "random"
    unpacked = tmp_path / "opt-ml-model"
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        tar.extractall(unpacked, filter="data")
    out = run_challenge(_paths(tmp_path, _stack_input(tmp_path, pages), unpacked), device="cpu")
    entries = json.loads(out.read_text())
    assert len(entries) == len(pages) and all(e["class"] == "atypical" for e in entries)


def test_referenced_base_weights_are_not_looked_for_in_the_model_folder():
    from mitotype.serving.challenge import is_packed

    assert is_packed("base/h-optimus-0.safetensors")
    for reference in ("random", "hf-hub:bioptimus/H-optimus-0", "bioptimus/H-optimus-0",
                      "package:efficientnet_lite0", "/weights/h0.bin"):
        assert not is_packed(reference), reference


def test_export_refuses_a_model_too_big_for_the_gpu(tmp_path):
    model = make_model_dir(tmp_path / "m")
    with pytest.raises(MitotypeError, match="GB of GPU memory"):
        export_model([model], tmp_path / "model.tar.gz", gpu_bytes=1024)
    assert not (tmp_path / "model.tar.gz").exists()


def test_export_refuses_a_configuration_that_does_not_fit_the_weights(tmp_path):
    """A stored LoRA rank other than the adapters' used to be packed, to fail only in the container."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model = make_model_dir(tmp_path / "m")
    file = model / "model.safetensors"
    with safe_open(str(file), framework="pt") as fh:
        meta = json.loads(fh.metadata()["mitotype"])
    meta["config"]["model"]["lora"]["rank"] = 8
    save_file(load_file(str(file)), str(file), metadata={"mitotype": json.dumps(meta)})
    with pytest.raises(MitotypeError, match=f"{file}: trainable weights do not fit"):
        export_model([model], tmp_path / "model.tar.gz")
    assert not (tmp_path / "model.tar.gz").exists()


def test_export_refuses_members_of_different_backbones(tmp_path):
    """The container builds every member on the one base the manifest names: a mixed ensemble cannot run."""
    vit = make_model_dir(tmp_path / "vit")
    cnn = make_model_dir(tmp_path / "cnn", overrides=["model.backbone=tiny-efficientnet", "model.adaptation=full"])
    with pytest.raises(MitotypeError, match="different backbones"):
        export_model([vit, cnn], tmp_path / "model.tar.gz")
    assert not (tmp_path / "model.tar.gz").exists()


def test_h_optimus_0_fits_the_platform_gpu():
    from mitotype.serving.export import PLATFORM_GPU_BYTES, estimate_inference_memory
    from mitotype.training.config import load_config, to_dict

    config = load_config(preset="full")
    meta = {"config": to_dict(config), "preprocessing": {"input_size": [3, 224, 224]}}
    estimate = estimate_inference_memory(meta, batch=16, tta=True)
    assert estimate.parameters > 1.1e9
    assert 2e9 < estimate.weight_bytes < estimate.total_bytes < PLATFORM_GPU_BYTES


def test_batched_tta_equals_looped_tta(tmp_path, pages):
    loaded = load_model_artifact(make_model_dir(tmp_path / "m"))
    batched = predict_proba(loaded.model, pages, batch_size=64, tta=True)
    x = torch.from_numpy(pages).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        looped = np.mean([torch.sigmoid(loaded.model(dihedral(x, k)).logits).numpy() for k in range(8)], axis=0)
    np.testing.assert_allclose(batched, looped, atol=1e-6)


def test_predict_cli_on_a_stack(tmp_path, pages, capsys):
    model = make_model_dir(tmp_path / "m", bias=5.0, threshold=0.5)
    stack = _stack_input(tmp_path, pages) / "images" / STACK_SLOT / "stack_1.tiff"
    assert main(["predict", str(stack), "--model", str(model), "--out", str(tmp_path / "p.json"),
                 "--device", "cpu", "--tta"]) == 0
    rows = json.loads((tmp_path / "p.json").read_text())
    assert len(rows) == len(pages)
    assert all(r["class"] == "atypical" and r["p_atypical"] > 0.99 and r["threshold"] == 0.5 for r in rows)


def test_base_weights_are_packed_or_referenced():
    from mitotype.serving.export import _base_reference

    packed, ref = _base_reference(None, "efficientnet-lite0-imagenet", include=True)
    assert packed is not None and packed.name == "efficientnet-lite0-57934424.pth" and ref is None
    packed, ref = _base_reference(None, "h-optimus-0", include=False)
    assert packed is None and ref == "hf-hub:bioptimus/H-optimus-0"
    assert _base_reference(None, "tiny-vit-reg4", include=True) == (None, None)


@pytest.mark.parametrize("args", [["--batch-size", "0"], ["--threshold", "nan"], ["--threshold", "1.5"]])
def test_predict_rejects_bad_numbers(tmp_path, pages, capsys, args):
    model = make_model_dir(tmp_path / "m")
    stack = _stack_input(tmp_path, pages) / "images" / STACK_SLOT / "stack_1.tiff"
    with pytest.raises(SystemExit) as info:
        main(["predict", str(stack), "--model", str(model), "--out", str(tmp_path / "p.json"), *args])
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_export_refuses_a_member_given_twice(tmp_path):
    """The same folder twice, or a copy of it: the container would run one model twice and weight it double."""
    model = make_model_dir(tmp_path / "m")
    with pytest.raises(MitotypeError, match="the same model is given twice"):
        export_model([model, tmp_path / "." / "m"], tmp_path / "model.tar.gz")
    shutil.copytree(model, tmp_path / "copy")
    with pytest.raises(MitotypeError, match=r"copy: the same weights as .*m \(a copy of one model\)"):
        export_model([model, tmp_path / "copy"], tmp_path / "model.tar.gz")
    assert not (tmp_path / "model.tar.gz").exists()
    other = make_model_dir(tmp_path / "other", bias=0.3)
    assert len(export_model([model, other], tmp_path / "model.tar.gz")["members"]) == 2
