"""The one prediction table: built from a model's scores, written and read back as JSON and CSV, and the files of
earlier versions (cross-validation's rows, the hold-out experiment's two-view rows) read as the same table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mitotype.data.records import FigureRecord
from mitotype.errors import DataError
from mitotype.evaluation.predictions import CSV_COLUMNS, Prediction, PredictionTable, read_predictions


def records(n: int = 6) -> list[FigureRecord]:
    return [FigureRecord(uid=f"f{i}", image=Path(f"f{i}.png"), label=i % 2, group=f"s{i // 2}", dataset="d",
                         domain="A" if i < 3 else "B", votes=(True, True, False) if i == 0 else ()) for i in range(n)]


def test_a_models_scores_become_rows_with_decisions_at_their_threshold(tmp_path) -> None:
    recs = records()
    p = np.array([0.2, 0.7, 0.4, 0.42, 0.9, 0.1], dtype=np.float32)
    table = PredictionTable.from_scores(recs, [0, 1, 2, 3, 4, 5], p, threshold=0.41, fold="lodo-A", tta=True)
    assert table.decisions().tolist() == [0, 1, 0, 1, 1, 0]
    assert table.labels().tolist() == [0, 1, 0, 1, 0, 1]
    assert table.slides().tolist()[:2] == ["d:s0", "d:s0"]
    first = table[0]
    assert (first.votes_atypical, first.votes_cast, first.domain, first.fold, first.tta) == (2, 3, "A", "lodo-A",
                                                                                              True)
    for path in (tmp_path / "p.json", tmp_path / "p.csv"):
        (table.write_json if path.suffix == ".json" else table.write_csv)(path)
        back = read_predictions(path)
        assert back == table
        np.testing.assert_array_equal(back.scores(), table.scores())  # exact, not rounded
    header = (tmp_path / "p.csv").read_text().splitlines()[0].split(",")
    # the columns cross-validation's predictions.csv always had, in that order
    assert header == ["uid", "fold", "domain", "group", "p_atypical", "decision", "label", "votes_atypical",
                      "votes_cast", "dataset", "threshold", "tta"] == list(CSV_COLUMNS)


def test_an_earlier_cross_validation_fold_file_reads_as_the_same_table(tmp_path) -> None:
    """The rows of ``folds/<name>/predictions.json`` as run_cv wrote them before the table existed."""
    old = [{"uid": "f0", "dataset": "d", "fold": "lodo-A", "domain": "A", "group": "s0", "p_atypical": 0.7,
            "decision": 1, "threshold": 0.5, "tta": False, "label": 1, "votes_atypical": None, "votes_cast": None}]
    (tmp_path / "predictions.json").write_text(json.dumps(old))
    table = read_predictions(tmp_path / "predictions.json")
    assert table.as_rows() == old
    assert table[0] == Prediction(uid="f0", dataset="d", group="s0", label=1, p_atypical=0.7, threshold=0.5,
                                  domain="A", fold="lodo-A")


def test_an_earlier_holdout_file_reads_both_ways_of_scoring_with_the_thresholds_beside_it(tmp_path) -> None:
    with (tmp_path / "test_predictions.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["uid", "dataset", "group", "label", "p_atypical", "p_atypical_tta"])
        writer.writerow(["a", "d", "s1", 1, 0.45, 0.38])
        writer.writerow(["b", "d", "s2", 0, 0.30, 0.36])
    with pytest.raises(DataError, match=r"scores\.json, which is missing"):
        read_predictions(tmp_path / "test_predictions.csv")
    (tmp_path / "scores.json").write_text(json.dumps({"threshold": 0.4, "threshold_tta": 0.35}))
    single = read_predictions(tmp_path / "test_predictions.csv", tta=False)
    tta = read_predictions(tmp_path / "test_predictions.csv", tta=True)
    assert single.scores().tolist() == [0.45, 0.30] and single.decisions().tolist() == [1, 0]
    assert tta.scores().tolist() == [0.38, 0.36] and tta.decisions().tolist() == [1, 1]
    assert tta.thresholds().tolist() == [0.35, 0.35] and all(r.tta for r in tta)
    assert len(read_predictions(tmp_path / "test_predictions.csv")) == 4


def test_a_file_that_is_not_a_prediction_table_is_named(tmp_path) -> None:
    (tmp_path / "p.json").write_text(json.dumps([{"uid": "a", "group": "s", "label": 1, "p_atypical": 0.3}]))
    with pytest.raises(DataError, match=r"p\.json: a prediction row lacks the column 'threshold'"):
        read_predictions(tmp_path / "p.json")
    (tmp_path / "q.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(DataError, match=r"q\.json: not a prediction file"):
        read_predictions(tmp_path / "q.json")
    (tmp_path / "r.csv").write_text("uid,group,label,p_atypical,threshold\na,s,1,high,0.5\n")
    with pytest.raises(DataError, match=r"r\.csv: a prediction row has a value that is not a number"):
        read_predictions(tmp_path / "r.csv")
