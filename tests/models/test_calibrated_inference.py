"""Calibrated p(atypical) wherever a model runs: PyTorch and ONNX ensembles, the API, predict and the challenge."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mitotype.models.calibration import Calibration, shift_prior
from tests.conftest import make_model_dir

SINGLE = Calibration(slope=0.7, intercept=-0.9, prevalence=0.22, figures=600)
TTA = Calibration(slope=0.9, intercept=-1.2, prevalence=0.22, figures=600)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (12, 128, 128, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same tiny weights twice: without a calibration (as models trained before it) and with one."""
    root = tmp_path_factory.mktemp("calibrated")
    raw = make_model_dir(root / "raw", bias=0.4, threshold=0.55, threshold_tta=0.52)
    cal = make_model_dir(root / "cal", bias=0.4, threshold=0.55, threshold_tta=0.52,
                         calibration={"single": SINGLE, "tta": TTA})
    return raw, cal


@pytest.mark.parametrize("tta", [False, True])
def test_ensemble_reports_calibrated_p_and_threshold_with_the_same_decisions(model_pair, images, tta) -> None:
    from mitotype.models.predict import load_ensemble

    raw_dir, cal_dir = model_pair
    raw, _ = load_ensemble([raw_dir], device="cpu", runtime="torch")
    cal, _ = load_ensemble([cal_dir], device="cpu", runtime="torch")
    cmap = TTA if tta else SINGLE
    p_raw, p_cal = raw.predict(images, tta=tta), cal.predict(images, tta=tta)
    assert np.allclose(p_cal, cmap.apply(p_raw), atol=1e-7)
    assert cal.threshold(tta) == pytest.approx(cmap.threshold(0.52 if tta else 0.55))
    assert np.array_equal(p_cal >= cal.threshold(tta), p_raw >= raw.threshold(tta))
    assert np.allclose(cal.predict(images, tta=tta, calibrated=False), p_raw)  # raw scores on request
    assert cal.threshold(tta, calibrated=False) == raw.threshold(tta)


def test_a_member_without_calibration_keeps_the_ensemble_on_raw_scores(model_pair, images) -> None:
    from mitotype.models.predict import load_ensemble

    both, _ = load_ensemble(list(model_pair), device="cpu", runtime="torch")
    raw, _ = load_ensemble([model_pair[0]], device="cpu", runtime="torch")
    assert np.allclose(both.predict(images), raw.predict(images))
    assert both.threshold() == pytest.approx(0.55)


@pytest.mark.slow
def test_onnx_path_applies_the_same_calibration(model_pair, images, tmp_path: Path) -> None:
    import shutil

    from mitotype.cli.main import main
    from mitotype.models.inference import load_predictor
    from mitotype.models.predict import load_ensemble

    cal_dir = shutil.copytree(model_pair[1], tmp_path / "cal")
    assert main(["models", "onnx", str(cal_dir)]) == 0
    onnx = load_predictor([cal_dir], device="cpu", runtime="onnx")
    torch_ens, _ = load_ensemble([cal_dir], device="cpu", runtime="torch")
    for tta in (False, True):
        assert np.abs(onnx.predict(images, tta=tta) - torch_ens.predict(images, tta=tta)).max() < 1e-5
        assert onnx.threshold(tta) == pytest.approx(torch_ens.threshold(tta))


def test_api_prevalence_moves_p_not_decisions(model_pair, images) -> None:
    import mitotype
    from mitotype.errors import ConfigError

    clf = mitotype.load(model_pair[1], runtime="torch")
    base = clf.predict(images)
    assert base.calibrated and base.prevalence == pytest.approx(0.22)
    at10 = clf.predict(images, prevalence=0.1)
    assert np.allclose(at10.p_atypical, shift_prior(base.p_atypical, 0.22, 0.1))
    assert at10.threshold == pytest.approx(float(shift_prior(np.array([base.threshold]), 0.22, 0.1)[0]))
    assert np.array_equal(at10.atypical, base.atypical)
    assert np.all(at10.p_atypical < base.p_atypical)
    assert not clf.predict(images, calibrated=False).calibrated
    with pytest.raises(ConfigError, match="store no calibration"):
        mitotype.load(model_pair[0], runtime="torch").predict(images, prevalence=0.1)
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        clf.predict(images, prevalence=1.0)


def test_predict_and_challenge_write_calibrated_p(model_pair, shared_data: Path, tmp_path: Path, capsys) -> None:
    from mitotype.cli.main import main
    from mitotype.models.predict import load_ensemble
    from mitotype.serving.challenge import ChallengePaths, run_challenge
    from mitotype.serving.stack import find_stack, read_stack

    raw_dir, cal_dir = model_pair
    input_dir = shared_data / "midog25_t2_stack" / "input"
    stack = find_stack(input_dir / "images" / "stacked-histopathology-roi-cropouts")
    raw_p = load_ensemble([raw_dir], device="cpu")[0].predict(read_stack(stack), tta=True)
    out = run_challenge(ChallengePaths(input_dir, tmp_path / "out", [cal_dir]), device="cpu")
    entries = json.loads(out.read_text())
    assert [e["confidence"] for e in entries] == pytest.approx(TTA.apply(raw_p).tolist(), abs=1e-6)
    assert [e["class"] for e in entries] == ["atypical" if q >= 0.52 else "normal" for q in raw_p]
    csv_path = tmp_path / "p.csv"
    assert main(["predict", str(stack), "--model", str(cal_dir), "--out", str(csv_path), "--prevalence", "0.1"]) == 0
    assert "p calibrated at 10% atypical" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        main(["predict", str(stack), "--model", str(cal_dir), "--out", str(csv_path), "--prevalence", "1.5"])
    assert refused.value.code == 2
    assert "strictly between 0 and 1" in capsys.readouterr().err


def test_prevalence_refusals_name_the_real_reason(model_pair, images, tmp_path: Path, capsys) -> None:
    """A mixed ensemble was told 'these models store no calibration' though one did, and `predict --uncalibrated
    --prevalence` named the API's `calibrated=False` instead of the flags (outside probe)."""
    import mitotype
    from mitotype.cli.main import main
    from mitotype.errors import ConfigError

    raw_dir, cal_dir = model_pair
    mixed = mitotype.load([cal_dir, raw_dir], runtime="torch")
    with pytest.raises(ConfigError, match=rf"1 of the 2 models store no calibration for single-view scores \(e\.g\. "
                                          rf"{raw_dir}\), so the ensemble reports raw scores"):
        mixed.predict(images, prevalence=0.1)
    with pytest.raises(ConfigError, match=r"cannot go with calibrated=False"):
        mitotype.load(cal_dir, runtime="torch").predict(images, calibrated=False, prevalence=0.1)
    figure = tmp_path / "fig.png"
    Image.fromarray(images[0]).save(figure)
    out = tmp_path / "p.csv"
    assert main(["predict", str(figure), "--model", str(cal_dir), "--out", str(out), "--uncalibrated",
                 "--prevalence", "0.1"]) == 2
    assert capsys.readouterr().err == ("error: --prevalence re-expresses calibrated p(atypical); it cannot go with "
                                       "--uncalibrated (the raw scores)\n")
    assert not out.exists()
