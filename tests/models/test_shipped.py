"""Models that ship inside the package: packed in fp16 without base weights, found by predict and challenge."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from safetensors import safe_open

import mitotype.models.shipped as shipped
from mitotype.cli.main import main
from mitotype.errors import MitotypeError
from mitotype.models.predict import load_ensemble
from tests.conftest import make_model_dir


@pytest.fixture()
def packed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    run = make_model_dir(tmp_path / "run", threshold=0.4, overrides=["model.adaptation=full"])
    root = tmp_path / "shipped"
    dest = shipped.pack_shipped_model(run, root / shipped.DEFAULT_SHIPPED_MODEL,
                                      "# Card\n\nA tiny test model.\n\n## Terms\nnone\n")
    monkeypatch.setattr(shipped, "SHIPPED_DIR", root)
    return run, dest


def test_packed_in_fp16_needs_no_base_weights_and_predicts_like_the_run(packed) -> None:
    run, dest = packed
    with safe_open(str(dest / "model.safetensors"), framework="pt") as fh:
        dtypes = {fh.get_tensor(k).dtype for k in fh.keys()}  # noqa: SIM118 (safe_open is not iterable)
        meta = json.loads(fh.metadata()["mitotype"])
    assert "torch.float16" in {str(d) for d in dtypes} and "torch.float32" not in {str(d) for d in dtypes}
    assert meta["config"]["model"]["weights"] == "random" and meta["threshold"] == pytest.approx(0.4)
    assert shipped.fp16_max_error(run, dest) < 1e-2
    images = np.random.default_rng(0).integers(0, 255, (6, 128, 128, 3), dtype=np.uint8)
    original, _ = load_ensemble([run], device="cpu")
    packed_model, _ = load_ensemble([dest], device="cpu")
    p0, p1 = original.predict(images), packed_model.predict(images)
    assert np.abs(p0 - p1).max() < 5e-3 and not np.allclose(p1, p1[0])


def test_lora_models_are_refused(tmp_path: Path) -> None:
    run = make_model_dir(tmp_path / "run")  # LoRA on a frozen backbone: needs its base weights
    with pytest.raises(MitotypeError, match="only fully fine-tuned"):
        shipped.pack_shipped_model(run, tmp_path / "dest", "# x\n")


def test_predict_without_model_uses_the_shipped_one(packed, tmp_path: Path, capsys) -> None:
    stack = tmp_path / "stack.tiff"
    tifffile.imwrite(stack, np.random.default_rng(1).integers(0, 255, (3, 128, 128, 3), dtype=np.uint8),
                     photometric="rgb")
    out = tmp_path / "p.csv"
    assert main(["predict", str(stack), "--out", str(out), "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    assert said.splitlines()[0].startswith(f"using the shipped model {shipped.DEFAULT_SHIPPED_MODEL}")
    assert len(list(csv.DictReader(out.open()))) == 3
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"{shipped.DEFAULT_SHIPPED_MODEL} [default]" in listing and "A tiny test model." in listing


def test_challenge_can_use_the_shipped_model(packed, tmp_path: Path) -> None:
    folder = tmp_path / "input" / "images" / "stacked-histopathology-roi-cropouts"
    folder.mkdir(parents=True)
    tifffile.imwrite(folder / "s.tiff", np.zeros((2, 128, 128, 3), dtype=np.uint8), photometric="rgb")
    assert main(["challenge", "--input-dir", str(tmp_path / "input"), "--output-dir", str(tmp_path / "out"),
                 "--model-dir", "shipped", "--device", "cpu"]) == 0
    assert len(json.loads((tmp_path / "out" / "multiple-mitotic-figure-classification.json").read_text())) == 2


def test_no_shipped_model_is_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "none")
    stack = tmp_path / "stack.tiff"
    tifffile.imwrite(stack, np.zeros((1, 128, 128, 3), dtype=np.uint8), photometric="rgb")
    assert main(["predict", str(stack), "--out", str(tmp_path / "p.csv")]) == 2
    assert "no shipped model named" in capsys.readouterr().err


def test_the_container_environment_can_name_the_shipped_model(packed, monkeypatch) -> None:
    from mitotype.serving.challenge import ChallengePaths

    monkeypatch.setenv("MITOTYPE_MODEL_DIR", "shipped")
    assert ChallengePaths.from_env().model_dirs == [packed[1]]
    monkeypatch.setenv("MITOTYPE_MODEL_DIR", "/opt/elsewhere")
    assert ChallengePaths.from_env().model_dirs == [Path("/opt/elsewhere")]


def test_rechosen_thresholds_replace_the_runs_own_everywhere_the_model_is_read(tmp_path: Path) -> None:
    import yaml

    run = make_model_dir(tmp_path / "run", threshold=0.4, overrides=["model.adaptation=full"])
    rechosen = shipped.RechosenThresholds(rule="val-platt", threshold=0.31, threshold_tta=0.29, source="result.json")
    dest = shipped.pack_shipped_model(run, tmp_path / "dest", "# Card\n", thresholds=rechosen)
    with safe_open(str(dest / "model.safetensors"), framework="pt") as fh:
        in_file = json.loads(fh.metadata()["mitotype"])
    beside = json.loads((dest / "model.json").read_text())
    for meta in (in_file, beside):
        assert (meta["threshold"], meta["threshold_tta"]) == (0.31, 0.29)
        assert meta["config"]["threshold"] == "val-platt"
        assert meta["thresholds_rechosen"]["from"][0] == pytest.approx(0.4)
        assert meta["thresholds_rechosen"]["source"] == "result.json"
    assert yaml.safe_load((dest / "config.yaml").read_text())["threshold"] == "val-platt"
    ensemble, _ = load_ensemble([dest], device="cpu")
    assert (ensemble.threshold(False), ensemble.threshold(True)) == pytest.approx((0.31, 0.29))


def test_models_ship_packs_a_run_with_a_card_written_from_the_run(tmp_path: Path, capsys) -> None:
    run = make_model_dir(tmp_path / "run", threshold=0.42, overrides=["model.adaptation=full", "seed=7",
                                                                      "strategies.mixup.enabled=false"])
    figures = (("balanced_accuracy", 0.75), ("sensitivity", 0.7), ("specificity", 0.8), ("roc_auc", 0.81))
    (run / "scores.json").write_text(json.dumps({
        "n_test": 40, **{f"test_{k}{s}": v for s in ("", "_tta") for k, v in figures}}))
    result = tmp_path / "thr.json"
    result.write_text(json.dumps({"figures": {"runs": {str(run): {
        view: {"platt": {"threshold": t}} for view, t in (("single", 0.31), ("tta", 0.29))}}}}))
    out = tmp_path / "packed"
    assert main(["models", "ship", str(run), "--out", str(out), "--name", "tiny-ship", "--thresholds", str(result),
                 "--command", "mitotype train --preset full-cpu"]) == 0
    assert "card:" in capsys.readouterr().out
    card = (out / shipped.CARD_FILE).read_text()
    assert card.startswith("# tiny-ship\n\ntiny-vit-reg4 at 56 px, trained with mitotype")
    assert "Started from the backbone's default weights, fully fine-tuned" in card  # the run's, not `random`
    assert "(`threshold: val-platt`):\n**0.3100** single view, **0.2900** with 8-view TTA" in card
    assert "Seed 7:" in card and "strategies on: soft_labels, adaptive_focal" in card and "mixup" not in card
    assert "| 8-view TTA | 0.750 | 0.700 | 0.800 | 0.810 |" in card
    assert card.endswith("```bash\nmitotype train --preset full-cpu\n```\n")
    assert [m.name for m in shipped.list_shipped_models(tmp_path)] == ["packed"]  # a shipped-style folder
    assert shipped.list_shipped_models(tmp_path)[0].summary.startswith("tiny-vit-reg4 at 56 px")
    loaded, _ = load_ensemble([out], device="cpu")
    assert loaded.threshold(False) == pytest.approx(0.31) and loaded.threshold(True) == pytest.approx(0.29)
    # a second pack into the same folder, and a run that needs base weights, are refused in one line
    assert main(["models", "ship", str(run), "--out", str(out)]) == 2
    assert "already holds a model" in capsys.readouterr().err
    lora = make_model_dir(tmp_path / "lora")
    assert main(["models", "ship", str(lora), "--out", str(tmp_path / "lora-packed")]) == 2
    assert "only fully fine-tuned models" in capsys.readouterr().err
    # a run stopped half-way is refused unless asked for, as predict and export refuse it
    half = make_model_dir(tmp_path / "half", overrides=["model.adaptation=full"])
    (half / "last_state.pt").write_bytes(b"")
    assert main(["models", "ship", str(half), "--out", str(tmp_path / "half-packed")]) == 2
    assert "not a finished model" in capsys.readouterr().err
    assert main(["models", "ship", str(half), "--out", str(tmp_path / "half-packed"), "--allow-unfinished"]) == 0
    assert "note:" in capsys.readouterr().err
    assert "Started from the backbone's default weights" in (tmp_path / "half-packed" / shipped.CARD_FILE).read_text()


def test_a_calibrated_runs_card_gives_the_thresholds_on_the_scale_predict_applies(tmp_path: Path, capsys) -> None:
    """A run trained now stores calibration maps, so `predict` reports calibrated p and applies its thresholds
    mapped onto them (0.212 here) while the card said only 0.4000: a user passing the card's threshold with
    `--threshold` changed the decisions (outside probe)."""
    import mitotype
    from mitotype.models.calibration import Calibration

    maps = {"single": Calibration(2.0, -0.5, 0.22, 100), "tta": Calibration(2.1, -0.4, 0.22, 100)}
    run = make_model_dir(tmp_path / "run", threshold=0.4, threshold_tta=0.38, overrides=["model.adaptation=full"],
                         calibration=maps)
    out = tmp_path / "packed"
    assert main(["models", "ship", str(run), "--out", str(out)]) == 0
    capsys.readouterr()
    card = (out / shipped.CARD_FILE).read_text()
    classifier = mitotype.load(out, device="cpu", runtime="torch")
    single, tta = classifier.threshold(), classifier.threshold(tta=True)
    assert (single, tta) == pytest.approx((maps["single"].threshold(0.4), maps["tta"].threshold(0.38)))
    assert "**0.4000** single view, **0.3800** with 8-view TTA" in card  # the raw scores' own, as before
    assert ("p(atypical) is calibrated: a Platt map fitted on the validation slides (at their 22% atypical figures)"
            in card and f"**{single:.4f}** single view\nand **{tta:.4f}** with TTA" in card)
    raw = make_model_dir(tmp_path / "raw", threshold=0.4, overrides=["model.adaptation=full"])
    assert main(["models", "ship", str(raw), "--out", str(tmp_path / "raw-packed")]) == 0
    assert "p(atypical) is calibrated" not in (tmp_path / "raw-packed" / shipped.CARD_FILE).read_text()
