"""The challenge JSON as the official evaluator reads it, end to end on the real input stack.

The evaluator (DeepMicroscopy/MIDOG25_T2_evaluation_docker, ``evaluate.py``) rebuilds each figure's ROC
score as ``confidence if class == "atypical" else 1 - confidence``; these tests hold ``mitotype
challenge`` and ``mitotype score`` to that reading.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mitotype.cli.main import main
from mitotype.models.predict import load_ensemble
from mitotype.serving.challenge import OUTPUT_NAME, STACK_SLOT, ChallengePaths, run_challenge
from mitotype.serving.outputs import p_atypical_from_entry
from mitotype.serving.stack import find_stack, read_stack
from tests.conftest import make_model_dir

STACK = Path("midog25_t2_stack")


def _model_p(model_dir: Path, input_dir: Path) -> np.ndarray:
    """The model's own p(atypical) per page, computed as the container computes it (TTA, batch 16 x 8)."""
    images = read_stack(find_stack(input_dir / "images" / STACK_SLOT))
    ensemble, _ = load_ensemble([model_dir], device="cpu")
    return ensemble.predict(images, batch_size=16 * 8, tta=True)


@pytest.fixture(scope="module")
def real_stack_p(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    root = tmp_path_factory.mktemp("contract")
    model = make_model_dir(root / "model0", threshold=0.5)
    input_dir = shared_data / STACK / "input"
    return model, input_dir, _model_p(model, input_dir)


@pytest.mark.shared
@pytest.mark.parametrize("threshold", [0.05, 0.5, 0.95, "median"])
def test_evaluator_rebuild_gives_back_p_at_any_threshold(real_stack_p, tmp_path: Path, threshold) -> None:
    model0, input_dir, p = real_stack_p
    thr = float(np.median(p)) if threshold == "median" else threshold
    model = shutil.copytree(model0, tmp_path / "model")
    meta = json.loads((model / "model.json").read_text())
    make_model_dir(model, threshold=thr)  # the same weights, another stored threshold
    assert json.loads((model / "model.json").read_text())["config"] == meta["config"]
    out = run_challenge(ChallengePaths(input_dir, tmp_path / "out", [model]), device="cpu")
    entries = json.loads(out.read_text())
    assert len(entries) == len(p) == 16
    for entry, q in zip(entries, p):
        assert entry["class"] == ("atypical" if q >= thr else "normal")
        assert type(entry["confidence"]) is float and 0.0 <= entry["confidence"] <= 1.0
        assert p_atypical_from_entry(entry["class"], entry["confidence"]) == pytest.approx(q, abs=1e-12)
    if threshold == "median":  # both classes present: the test sees both branches of the rule
        assert {e["class"] for e in entries} == {"normal", "atypical"}


@pytest.mark.shared
def test_score_gives_the_auc_of_p_and_catches_the_old_output(
    real_stack_p, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model0, input_dir, p = real_stack_p
    model = shutil.copytree(model0, tmp_path / "model")
    make_model_dir(model, threshold=float(np.median(p)))
    out_dir = tmp_path / "preds"
    assert main(["challenge", "--input-dir", str(input_dir), "--output-dir", str(out_dir),
                 "--model-dir", str(model), "--device", "cpu"]) == 0
    stem = find_stack(input_dir / "images" / STACK_SLOT).stem
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(out_dir / OUTPUT_NAME, folder / f"{stem}.json")
    # A hand-made ground truth for the stack (its real labels are not public): the 4 pages of highest p
    # and the 2 highest of those called normal are atypical, so the order among normal calls matters.
    order = np.argsort(p)
    labels = np.zeros(len(p), dtype=int)
    labels[order[-4:]] = 1
    labels[order[6:8]] = 1
    gt = tmp_path / "ground_truth.json"
    gt.write_text(json.dumps([{"image": f"{stem}.tiff", "labels": ["atypical" if v else "normal" for v in labels],
                               "tumordomains": [3] * 8 + [5] * 8}]))
    metrics = tmp_path / "metrics.json"
    capsys.readouterr()
    assert main(["score", "--ground-truth", str(gt), "--predictions", str(folder), "--json", str(metrics)]) == 0
    printed = capsys.readouterr().out
    assert "probability of the predicted class" in printed
    result = json.loads(metrics.read_text())
    assert result["aggregates"]["overall_roc_auc"] == pytest.approx(roc_auc_score(labels, p), abs=1e-12)
    assert result["aggregates"]["domain_3"]["roc_auc"] == pytest.approx(roc_auc_score(labels[:8], p[:8]), abs=1e-12)
    # The old output (p(atypical) written for every page) scores a different AUC under the evaluator's reading.
    entries = json.loads((folder / f"{stem}.json").read_text())
    old = [{"class": e["class"], "confidence": float(q)} for e, q in zip(entries, p)]
    (folder / f"{stem}.json").write_text(json.dumps(old))
    assert main(["score", "--ground-truth", str(gt), "--predictions", str(folder), "--json", str(metrics)]) == 0
    wrong = json.loads(metrics.read_text())["aggregates"]["overall_roc_auc"]
    assert abs(wrong - roc_auc_score(labels, p)) > 0.05
