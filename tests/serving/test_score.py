"""Challenge outputs (writing, validating) and the evaluator re-implemented (``mitotype score``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score, roc_auc_score

from mitotype.cli.main import main
from mitotype.errors import DataError
from mitotype.serving.outputs import (
    OUTPUT_FILENAME,
    challenge_entries,
    roc_score_from_entry,
    validate_output,
    write_challenge_output,
)
from mitotype.serving.score import load_ground_truth, load_predictions, score_files

EXAMPLE = Path("midog25_t2_eval_example")


# ------------------------------------------------------------------------------------------ outputs
def test_challenge_entries_types_and_threshold() -> None:
    entries = challenge_entries(np.array([0.0, 0.3, 0.5, 1.0], dtype=np.float32), threshold=0.5)
    assert [e["class"] for e in entries] == ["normal", "normal", "atypical", "atypical"]
    assert all(type(e["confidence"]) is float for e in entries)  # never int, never numpy
    # confidence is p(atypical) for every figure, whatever the class
    assert entries[1]["confidence"] == pytest.approx(0.3)
    assert entries[2]["confidence"] == pytest.approx(0.5)
    assert json.dumps(entries[0]) == '{"class": "normal", "confidence": 0.0}'
    assert challenge_entries([0.3], threshold=0.2)[0] == {"class": "atypical", "confidence": 0.3}
    assert challenge_entries([0.3], threshold=0.4)[0] == {"class": "normal", "confidence": 0.3}
    validate_output(entries, 4)


@pytest.mark.parametrize("threshold", [0.0, 0.05, 0.5, 0.95, 1.0])
def test_challenge_entries_confidence_is_p(threshold: float) -> None:
    p = np.concatenate([[0.0, 1.0, threshold], np.random.default_rng(1).random(200)]).clip(0, 1)
    entries = challenge_entries(p, threshold)
    for entry, q in zip(entries, p):
        assert entry["class"] == ("atypical" if q >= threshold else "normal")
        assert type(entry["confidence"]) is float and 0.0 <= entry["confidence"] <= 1.0
        assert entry["confidence"] == pytest.approx(q, abs=1e-12)
        assert roc_score_from_entry(entry["class"], entry["confidence"]) == entry["confidence"]
    text = json.dumps(entries[:2])  # p exactly 0 and 1 still serialise as JSON floats
    assert '"confidence": 0.0' in text and '"confidence": 1.0' in text
    assert '"confidence": 1}' not in text and '"confidence": 0}' not in text
    validate_output(json.loads(json.dumps(entries)), len(p))


def test_roc_score_readings() -> None:
    assert roc_score_from_entry("normal", 0.2) == 0.2  # the final evaluator: as it stands
    assert roc_score_from_entry("normal", 0.2, "predicted-class") == pytest.approx(0.8)  # the superseded draft
    assert roc_score_from_entry("atypical", 0.9, "predicted-class") == 0.9
    with pytest.raises(ValueError, match="unknown confidence reading"):
        roc_score_from_entry("normal", 0.2, "p")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_challenge_entries_reject_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        challenge_entries([0.2, bad])


def test_challenge_entries_reject_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        challenge_entries([1.2])


GOOD = {"class": "normal", "confidence": 0.25}


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ({"class": "normal", "confidence": 0.2}, "expected a JSON list"),
        ([GOOD], "has 1 entries but the stack has 2 figures"),
        ([GOOD, "normal"], "entry 1 is a str"),
        ([GOOD, {"confidence": 0.2}], "entry 1 lacks key\\(s\\) 'class'"),
        ([GOOD, {"class": "normal"}], "entry 1 lacks key\\(s\\) 'confidence'"),
        ([GOOD, {"class": "Atypical", "confidence": 0.2}], "entry 1 has class 'Atypical'"),
        ([GOOD, {"class": 1, "confidence": 0.2}], "entry 1 has class 1"),
        ([{"class": "atypical", "confidence": 1}, GOOD], "entry 0 has confidence 1 of type int.*write 1.0"),
        ([GOOD, {"class": "atypical", "confidence": True}], "type bool"),
        ([GOOD, {"class": "atypical", "confidence": "0.5"}], "type str"),
        ([GOOD, {"class": "atypical", "confidence": float("nan")}], "non-finite"),
        ([GOOD, {"class": "atypical", "confidence": 1.5}], "outside \\[0, 1\\]"),
    ],
)
def test_validate_output_rejects(entries: Any, match: str) -> None:
    with pytest.raises(DataError, match=match) as exc:
        validate_output(entries, 2, "/output/x.json")
    assert str(exc.value).startswith("/output/x.json: ")


def test_validate_output_extra_keys() -> None:
    entries = [{"class": "normal", "confidence": 0.1, "note": "x"}]
    validate_output(entries, 1)  # the platform ignores extra keys
    with pytest.raises(DataError, match="unexpected key"):
        validate_output(entries, 1, allow_extra_keys=False)


def test_write_challenge_output(tmp_path: Path) -> None:
    path = write_challenge_output(tmp_path / OUTPUT_FILENAME, challenge_entries([0.0, 0.9]), n_expected=2)
    assert json.loads(path.read_text()) == [
        {"class": "normal", "confidence": 0.0},
        {"class": "atypical", "confidence": 0.9},
    ]
    with pytest.raises(DataError):
        write_challenge_output(tmp_path / "bad.json", [{"class": "normal", "confidence": 0}])


# ------------------------------------------------------------------------------------------ scoring
def make_job(pk: str, image: str) -> dict[str, Any]:
    """A job in the schema of the platform's predictions.json (see the evaluator's example file)."""
    return {
        "pk": pk,
        "inputs": [
            {
                "file": None,
                "image": {"name": image},
                "value": None,
                "interface": {
                    "slug": "stacked-histopathology-roi-cropouts",
                    "kind": "Image",
                    "super_kind": "Image",
                    "relative_path": "images/stacked-histopathology-roi-cropouts",
                    "example_value": None,
                },
            }
        ],
        "outputs": [
            {
                "file": f"https://grand-challenge.org/media/some-link/{OUTPUT_FILENAME}",
                "image": None,
                "value": None,
                "interface": {
                    "slug": "multiple-mitotic-figure-classification",
                    "kind": "Anything",
                    "super_kind": "File",
                    "relative_path": OUTPUT_FILENAME,
                    "example_value": None,
                },
            }
        ],
        "status": "Succeeded",
        "started_at": "2025-08-01T10:00:00Z",
        "completed_at": "2025-08-01T10:00:20Z",
    }


def build_tree(
    tmp_path: Path, seed: int = 0, reading: str = "p-atypical"
) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Ground truth of 4 stacks in 2 tumour domains and the platform's prediction tree for it.

    ``conf`` in the returned arrays is each figure's p(atypical); the outputs carry it as ``reading``
    says: p(atypical) for every figure (the contract) or the probability of the predicted class (the draft).
    """
    rng = np.random.default_rng(seed)
    gt, jobs = [], []
    arrays: dict[str, list] = {"y": [], "pred": [], "conf": [], "domain": []}
    for k, (n, domain) in enumerate([(16, 1), (16, 1), (10, 2), (7, 2)]):
        image = f"stack_{k + 1}.tiff"
        y = (rng.random(n) < 0.3).astype(int)
        y[0], y[1] = 0, 1  # both classes in every stack
        conf = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
        pred = (conf >= 0.45).astype(int)
        gt.append(
            {
                "image": image,
                "labels": ["atypical" if v else "normal" for v in y],
                "tumordomains": [domain] * n,
            }
        )
        pk = f"00000000-0000-0000-0000-00000000000{k}"
        jobs.append(make_job(pk, image))
        out = tmp_path / "input" / pk / "output" / OUTPUT_FILENAME
        out.parent.mkdir(parents=True)
        written = conf if reading == "p-atypical" else np.where(pred == 1, conf, 1.0 - conf)
        out.write_text(
            json.dumps(
                [{"class": "atypical" if d else "normal", "confidence": float(c)} for d, c in zip(pred, written)]
            )
        )
        for key, value in (("y", y), ("pred", pred), ("conf", conf), ("domain", [domain] * n)):
            arrays[key].extend(value)
    jobs.reverse()  # the platform lists jobs in no particular order
    (tmp_path / "input" / "predictions.json").write_text(json.dumps(jobs, indent=1))
    gt_path = tmp_path / "ground_truth.json"
    gt_path.write_text(json.dumps(gt))
    return gt_path, tmp_path / "input", {k: np.asarray(v) for k, v in arrays.items()}


def test_score_matches_sklearn(tmp_path: Path) -> None:
    gt, preds, a = build_tree(tmp_path)
    res = score_files(gt, preds)
    agg = res["aggregates"]
    assert agg["overall_balanced_accuracy"] == pytest.approx(balanced_accuracy_score(a["y"], a["pred"]))
    assert agg["overall_sensitivity"] == pytest.approx(recall_score(a["y"], a["pred"]))
    assert agg["overall_specificity"] == pytest.approx(recall_score(a["y"], a["pred"], pos_label=0))
    assert agg["overall_accuracy"] == pytest.approx(accuracy_score(a["y"], a["pred"]))
    assert agg["overall_roc_auc"] == pytest.approx(roc_auc_score(a["y"], a["conf"]))
    for d in (1, 2):
        m = a["domain"] == d
        dom = agg[f"domain_{d}"]
        assert dom["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(a["y"][m], a["pred"][m]))
        assert dom["roc_auc"] == pytest.approx(roc_auc_score(a["y"][m], a["conf"][m]))
        assert set(dom) == {"sensitivity", "specificity", "balanced_accuracy", "accuracy", "roc_auc"}
        assert res["counts"]["domains"][f"domain_{d}"]["figures"] == int(m.sum())
    assert set(agg) == {"overall_sensitivity", "overall_specificity", "overall_balanced_accuracy",
                        "overall_roc_auc", "overall_accuracy", "domain_1", "domain_2"}
    assert res["confidence"] == "p-atypical"
    assert res["counts"]["figures"] == 49 and res["counts"]["images"] == 4
    # The same numbers from the file itself and from a folder of <stem>.json outputs.
    assert score_files(gt, preds / "predictions.json") == res
    flat = tmp_path / "flat"
    flat.mkdir()
    for job in json.loads((preds / "predictions.json").read_text()):
        stem = job["inputs"][0]["image"]["name"].rsplit(".", 1)[0]
        shutil.copy(preds / job["pk"] / "output" / OUTPUT_FILENAME, flat / f"{stem}.json")
    assert score_files(gt, flat)["aggregates"] == agg


def test_predicted_class_reading_for_outputs_of_the_superseded_draft(tmp_path: Path) -> None:
    gt, preds, a = build_tree(tmp_path, reading="predicted-class")
    res = score_files(gt, preds, confidence="predicted-class")
    assert res["confidence"] == "predicted-class"
    assert res["aggregates"]["overall_roc_auc"] == pytest.approx(roc_auc_score(a["y"], a["conf"]))
    # Read as the final evaluator reads it, the same file ranks every figure called normal upside down.
    default = score_files(gt, preds)
    flipped = np.where(a["pred"] == 1, a["conf"], 1 - a["conf"])
    assert default["aggregates"]["overall_roc_auc"] == pytest.approx(roc_auc_score(a["y"], flipped))
    assert default["aggregates"]["overall_roc_auc"] != pytest.approx(res["aggregates"]["overall_roc_auc"])
    assert default["aggregates"]["overall_balanced_accuracy"] == res["aggregates"]["overall_balanced_accuracy"]


def _first_output(preds: Path) -> Path:
    job = json.loads((preds / "predictions.json").read_text())[-1]  # stack_1 (jobs were reversed)
    return preds / job["pk"] / "output" / OUTPUT_FILENAME


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda e: e[:-1], "has 15 entries but the stack has 16"),
        (lambda e: [*e[:3], {"class": "normal"}, *e[4:]], "entry 3 lacks key\\(s\\) 'confidence'"),
        (lambda e: [*e[:2], {"class": "mitosis", "confidence": 0.4}, *e[3:]], "entry 2 has class 'mitosis'"),
        (lambda e: [{"class": "atypical", "confidence": 1}, *e[1:]], "entry 0 has confidence 1 of type int"),
        (lambda e: {"predictions": e}, "expected a JSON list"),
    ],
)
def test_malformed_outputs_are_rejected(tmp_path: Path, mutate: Any, match: str) -> None:
    gt, preds, _ = build_tree(tmp_path)
    out = _first_output(preds)
    out.write_text(json.dumps(mutate(json.loads(out.read_text()))))
    with pytest.raises(DataError, match=match) as exc:
        score_files(gt, preds)
    assert str(out) in str(exc.value)


def test_missing_and_unknown_stacks(tmp_path: Path) -> None:
    gt, preds, _ = build_tree(tmp_path)
    listing = preds / "predictions.json"
    jobs = json.loads(listing.read_text())
    listing.write_text(json.dumps(jobs[1:]))  # drop stack_4's job
    with pytest.raises(DataError, match=r"no prediction for 1 ground-truth image\(s\): stack_4\.tiff") as info:
        score_files(gt, preds)
    assert str(info.value).startswith(f"{gt}: ")  # the file the unmatched stack is listed in
    partial = score_files(gt, preds, allow_missing=True)
    assert partial["images_missing"] == ["stack_4.tiff"] and partial["counts"]["figures"] == 42
    listing.write_text(json.dumps([*jobs, make_job("extra", "stack_99.tiff")]))
    (preds / "extra" / "output").mkdir(parents=True)
    (preds / "extra" / "output" / OUTPUT_FILENAME).write_text("[]")
    with pytest.raises(DataError, match=r"no ground truth for predicted image\(s\) stack_99\.tiff") as info:
        score_files(gt, preds)
    assert str(preds / "extra" / "output" / OUTPUT_FILENAME) in str(info.value) and str(gt) in str(info.value)


def test_broken_files_are_reported(tmp_path: Path) -> None:
    gt, preds, _ = build_tree(tmp_path)
    out = _first_output(preds)
    out.write_text('[{"class": "normal", "confidence": 0.2},')
    with pytest.raises(DataError, match="not valid JSON \\(line 1"):
        score_files(gt, preds)
    out.unlink()
    with pytest.raises(DataError, match=r"output of job .* \(stack_1\.tiff\) not found"):
        score_files(gt, preds)
    jobs = json.loads((preds / "predictions.json").read_text())
    jobs[0]["status"] = "Failed"
    (preds / "predictions.json").write_text(json.dumps(jobs))
    with pytest.raises(DataError, match="status 'Failed'"):
        load_predictions(preds)
    bad_gt = tmp_path / "bad_gt.json"
    bad_gt.write_text(
        json.dumps([{"image": "a.tiff", "labels": ["normal", "weird"], "tumordomains": [1, 1]}])
    )
    with pytest.raises(DataError, match=r"entry 0 \(a\.tiff\): unknown label 'weird'"):
        load_ground_truth(bad_gt)


@pytest.mark.shared
def test_real_example_files(shared_data: Path, tmp_path: Path) -> None:
    truth = load_ground_truth(shared_data / EXAMPLE / "ground_truth.json")
    assert len(truth) == 4 and len(truth["stack_747.tiff"].labels) == 1
    # The example job list with outputs written where the platform mounts them.
    root = tmp_path / "input"
    root.mkdir()
    shutil.copy(shared_data / EXAMPLE / "predictions.json", root / "predictions.json")
    jobs = json.loads((root / "predictions.json").read_text())
    for job in jobs:
        n = len(truth[job["inputs"][0]["image"]["name"]].labels)
        out = root / job["pk"] / "output" / job["outputs"][0]["interface"]["relative_path"]
        out.parent.mkdir(parents=True)
        out.write_text(json.dumps(challenge_entries(np.linspace(0.05, 0.95, n))))
    preds = load_predictions(root)
    assert set(preds) <= set(truth) and len(preds) == len(jobs)
    res = score_files(shared_data / EXAMPLE / "ground_truth.json", root, allow_missing=True)
    assert res["counts"]["figures"] == sum(len(truth[i].labels) for i in preds)
    assert res["aggregates"]["overall_balanced_accuracy"] is not None
    json.dumps(res, allow_nan=False)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, preds, a = build_tree(tmp_path)
    out_json = tmp_path / "metrics" / "metrics.json"
    assert (
        main(["score", "--ground-truth", str(gt), "--predictions", str(preds), "--json", str(out_json)]) == 0
    )
    printed = capsys.readouterr().out
    assert "overall" in printed and "domain_1" in printed and "domain_2" in printed
    assert "p(atypical) for every figure" in printed
    assert f"{balanced_accuracy_score(a['y'], a['pred']):6.3f}" in printed
    saved = json.loads(out_json.read_text())
    assert saved["aggregates"]["overall_roc_auc"] == pytest.approx(roc_auc_score(a["y"], a["conf"]))


def test_cli_score_never_writes_metrics_over_its_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json onto the ground truth replaced it; into a folder of per-stack outputs it overwrote one of them
    (or was read as one more stack's output by the next run)."""
    gt, _, _ = build_tree(tmp_path)
    folder = tmp_path / "outputs"
    folder.mkdir()
    for item in json.loads(gt.read_text()):
        (folder / item["image"].replace(".tiff", ".json")).write_text(json.dumps(
            [{"class": "normal", "confidence": 0.8} for _ in item["labels"]]))
    before = {p: p.read_bytes() for p in [gt, *folder.iterdir()]}
    for target, said in ((gt, "also an input"), (folder / "stack_1.json", "lies in the predictions folder"),
                         (folder / "metrics.json", "lies in the predictions folder")):
        code = main(["score", "--ground-truth", str(gt), "--predictions", str(folder), "--json", str(target)])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith(f"error: {target}: ") and said in err
    assert {p: p.read_bytes() for p in [gt, *folder.iterdir()]} == before
    assert main(["score", "--ground-truth", str(gt), "--predictions", str(folder),
                 "--json", str(tmp_path / "metrics.json")]) == 0


def test_cli_score_malformed_exits_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, preds, _ = build_tree(tmp_path)
    out = _first_output(preds)
    entries = json.loads(out.read_text())
    entries[5]["confidence"] = 0
    out.write_text(json.dumps(entries))
    assert main(["score", "--ground-truth", str(gt), "--predictions", str(preds)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "entry 5" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


_GT = [{"image": "s1.tiff", "labels": ["normal", "atypical"], "tumordomains": [1, 1]}]
_OUT = [{"class": "normal", "confidence": 0.2}, {"class": "atypical", "confidence": 0.9}]


@pytest.mark.parametrize(
    ("gt_bytes", "message"),
    [
        ('[{"image": "s\xe9.tiff", "labels": ["normal"], "tumordomains": [1]}]'.encode("latin-1"),
         "not UTF-8 text, so not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'[{"image": "s1.tiff", "labels": ["normal", "atypical"], "tumordomains": [NaN, 1]}]',
         r"entry 0 \(s1.tiff\): tumordomains must be finite"),
    ],
    ids=["latin-1", "deeply-nested", "nan-domain"],
)
def test_ground_truth_that_cannot_be_json_or_a_domain(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      gt_bytes: bytes, message: str) -> None:
    """These used to end in a UnicodeDecodeError, a RecursionError, or ``y_true is empty`` (a NaN domain
    matches nothing, not even itself) with a traceback."""
    gt = tmp_path / "gt.json"
    gt.write_bytes(gt_bytes)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "s1.json").write_text(json.dumps(_OUT))
    with pytest.raises(DataError, match=message):
        load_ground_truth(gt)
    assert main(["score", "--ground-truth", str(gt), "--predictions", str(outputs)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith(f"error: {gt}: ")
    assert len(err.strip().splitlines()) == 1


def test_one_stack_output_given_as_predictions_says_what_it_is(tmp_path: Path) -> None:
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(_GT))
    out = tmp_path / "s1.json"
    out.write_text(json.dumps(_OUT))
    with pytest.raises(DataError, match=r"one stack's output, not a predictions\.json job list"):
        score_files(gt, out)
