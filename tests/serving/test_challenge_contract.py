"""The challenge JSON as the final official evaluator reads it, end to end on the real input stack.

The final evaluator (DeepMicroscopy/MIDOG25_T2_evaluation_docker, ``evaluate.py`` since commit 2d1b108, "confidence
is now only the confidence for atypical") appends each figure's ``confidence`` to its ROC scores as it stands, so
``confidence`` must be p(atypical) for every figure. These tests hold ``mitotype challenge`` (plain model folders,
fold ensembles and exported tarballs) and ``mitotype score`` to that reading, and would catch the superseded
draft's output (the probability of the predicted class) that earlier versions wrote.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mitotype.cli.main import main
from mitotype.models.predict import load_ensemble
from mitotype.models.shipped import get_shipped_model
from mitotype.serving.challenge import MANIFEST, OUTPUT_NAME, STACK_SLOT, ChallengePaths, run_challenge
from mitotype.serving.export import export_model
from mitotype.serving.stack import find_stack, read_stack
from tests.conftest import make_model_dir

STACK = Path("midog25_t2_stack")


def final_evaluator_auc(ground_truth: list[dict], outputs: dict[str, list[dict]]) -> float:
    """The final evaluator's ROC AUC, written out independently of mitotype: every figure of every stack
    pooled, label atypical = 1, score = ``confidence`` as it stands."""
    y, score = [], []
    for stack in ground_truth:
        entries = outputs[stack["image"]]
        assert len(entries) == len(stack["labels"])
        for label, entry in zip(stack["labels"], entries):
            y.append(int(label == "atypical"))
            score.append(entry["confidence"])
    return float(roc_auc_score(y, score))


def _stack_p(members: list[Path], input_dir: Path, tta: bool = True) -> np.ndarray:
    """p(atypical) per page, computed as the container computes it (batch 16 x 8 with TTA)."""
    images = read_stack(find_stack(input_dir / "images" / STACK_SLOT))
    ensemble, _ = load_ensemble(members, device="cpu")
    return ensemble.predict(images, batch_size=16 * (8 if tta else 1), tta=tta)


def _hand_made_truth(p: np.ndarray, stem: str) -> tuple[np.ndarray, list[dict]]:
    """A ground truth for the stack (its real labels are not public): the 4 pages of highest p and two of the
    middle ones are atypical, so the order among the figures called normal matters to the AUC."""
    order = np.argsort(p)
    labels = np.zeros(len(p), dtype=int)
    labels[order[-4:]] = 1
    labels[order[6:8]] = 1
    truth = [{"image": f"{stem}.tiff", "labels": ["atypical" if v else "normal" for v in labels],
              "tumordomains": [3] * 8 + [5] * (len(p) - 8)}]
    return labels, truth


@pytest.fixture(scope="module")
def shipped_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped model as an export root whose manifest can force any threshold."""
    root = tmp_path_factory.mktemp("shipped-root")
    shutil.copytree(get_shipped_model().folder, root / "m0")
    return root


@pytest.fixture(scope="module")
def shipped_p(shipped_root: Path, shared_data: Path) -> np.ndarray:
    return _stack_p([shipped_root / "m0"], shared_data / STACK / "input")


@pytest.mark.shared
@pytest.mark.parametrize("threshold", [0.05, 0.5, 0.95])
def test_confidence_is_p_atypical_on_every_page_at_any_threshold(
    shipped_root: Path, shipped_p: np.ndarray, shared_data: Path, tmp_path: Path, threshold: float
) -> None:
    (shipped_root / MANIFEST).write_text(json.dumps({"members": ["m0"], "tta": True, "threshold_tta": threshold}))
    out = run_challenge(ChallengePaths(shared_data / STACK / "input", tmp_path / "out", [shipped_root]),
                        device="cpu")
    entries = json.loads(out.read_text())
    assert len(entries) == len(shipped_p) == 16
    assert len(set(np.round(shipped_p, 3))) > 8  # a real model: the pages' p differ, so the test sees the order
    for entry, q in zip(entries, shipped_p):
        assert type(entry["confidence"]) is float
        assert entry["confidence"] == pytest.approx(float(q), abs=1e-6)
        assert entry["class"] == ("atypical" if q >= threshold else "normal")
    if threshold == 0.05:
        assert {e["class"] for e in entries} == {"atypical"} or min(shipped_p) < 0.05
    if threshold == 0.95:
        assert {e["class"] for e in entries} == {"normal"} or max(shipped_p) >= 0.95


@pytest.mark.shared
def test_score_and_the_final_evaluator_give_the_auc_of_p(
    shipped_root: Path, shipped_p: np.ndarray, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (shipped_root / MANIFEST).write_text(json.dumps({"members": ["m0"], "tta": True,
                                                     "threshold_tta": float(np.median(shipped_p))}))
    input_dir = shared_data / STACK / "input"
    out_dir = tmp_path / "preds"
    assert main(["challenge", "--input-dir", str(input_dir), "--output-dir", str(out_dir),
                 "--model-dir", str(shipped_root), "--device", "cpu"]) == 0
    stem = find_stack(input_dir / "images" / STACK_SLOT).stem
    entries = json.loads((out_dir / OUTPUT_NAME).read_text())
    assert {e["class"] for e in entries} == {"normal", "atypical"}  # both branches of the decision
    labels, truth = _hand_made_truth(shipped_p, stem)
    expected = roc_auc_score(labels, shipped_p)
    assert final_evaluator_auc(truth, {f"{stem}.tiff": entries}) == pytest.approx(expected, abs=1e-9)

    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(out_dir / OUTPUT_NAME, folder / f"{stem}.json")
    gt = tmp_path / "ground_truth.json"
    gt.write_text(json.dumps(truth))
    metrics = tmp_path / "metrics.json"
    capsys.readouterr()
    assert main(["score", "--ground-truth", str(gt), "--predictions", str(folder), "--json", str(metrics)]) == 0
    printed = capsys.readouterr().out
    assert "p(atypical) for every figure" in printed
    result = json.loads(metrics.read_text())
    assert result["confidence"] == "p-atypical"
    assert result["aggregates"]["overall_roc_auc"] == pytest.approx(expected, abs=1e-9)
    assert result["aggregates"]["domain_3"]["roc_auc"] == pytest.approx(
        roc_auc_score(labels[:8], shipped_p[:8]), abs=1e-9)

    # Last round's output (the probability of the predicted class) scores another AUC under the final reading,
    # both in mitotype score and in the evaluator written out above: the test would have caught it.
    draft = [{"class": e["class"], "confidence": float(q if e["class"] == "atypical" else 1.0 - q)}
             for e, q in zip(entries, shipped_p)]
    (folder / f"{stem}.json").write_text(json.dumps(draft))
    assert abs(final_evaluator_auc(truth, {f"{stem}.tiff": draft}) - expected) > 0.05
    assert main(["score", "--ground-truth", str(gt), "--predictions", str(folder), "--json", str(metrics)]) == 0
    assert abs(json.loads(metrics.read_text())["aggregates"]["overall_roc_auc"] - expected) > 0.05
    # ... and the draft's reading, asked for by name, gives p back from such an output.
    capsys.readouterr()
    assert main(["score", "--ground-truth", str(gt), "--predictions", str(folder), "--json", str(metrics),
                 "--confidence", "predicted-class"]) == 0
    assert "superseded draft" in capsys.readouterr().out
    assert json.loads(metrics.read_text())["aggregates"]["overall_roc_auc"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.shared
@pytest.mark.parametrize("tta", [True, False])
def test_exported_fold_ensemble_writes_p_atypical(shared_data: Path, tmp_path: Path, tta: bool) -> None:
    """Two fold models packed by ``mitotype export`` and unpacked as the platform does: confidence is the
    ensemble's p(atypical) and class follows the packed threshold of the TTA setting in force."""
    members = [make_model_dir(tmp_path / f"fold{k}", bias=b, threshold=t)
               for k, (b, t) in enumerate([(0.3, 0.52), (-0.1, 0.48)])]
    tarball = tmp_path / "model.tar.gz"
    export_model(members, tarball, tta=tta)
    unpacked = tmp_path / "opt-ml-model"
    with tarfile.open(tarball) as tar:
        tar.extractall(unpacked, filter="data")
    input_dir = shared_data / STACK / "input"
    out = run_challenge(ChallengePaths(input_dir, tmp_path / "out", [unpacked]), device="cpu")
    entries = json.loads(out.read_text())
    p = _stack_p(members, input_dir, tta=tta)
    threshold = load_ensemble(members, device="cpu")[0].threshold(tta)
    assert [e["confidence"] for e in entries] == pytest.approx(p.tolist(), abs=1e-6)
    assert [e["class"] for e in entries] == ["atypical" if q >= threshold else "normal" for q in p]
