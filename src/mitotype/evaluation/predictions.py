"""The one prediction table: a row per figure and way of scoring, as every experiment writes and reads it.

A row (:class:`Prediction`) says which figure (``dataset``, ``uid``, its slide ``group`` and ``domain``), which
model scored it (``fold``), how (``tta``: 8-view TTA or one view), its p(atypical) and the threshold its decision
was taken at, its label and the experts' votes. Cross-validation writes one per fold
(``folds/<name>/predictions.json``, its completion mark) and one for the run (``predictions.csv``); the hold-out
experiment one per run (``test_predictions.csv``, both ways of scoring); the comparisons
(:mod:`mitotype.evaluation.comparisons`) read them. JSON holds a list of rows, CSV a header and a row per line,
with the columns of :data:`COLUMNS` (CSV: :data:`CSV_COLUMNS`).

Files written by earlier versions are read too: cross-validation's used the same columns (a ``decision`` column
that is now derived, and was the same), and the hold-out experiment's held both ways of scoring in one row
(``p_atypical``, ``p_atypical_tta``) with their thresholds in ``scores.json`` beside it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, overload

import numpy as np

from mitotype.data.records import FigureRecord
from mitotype.errors import DataError
from mitotype.ioutils import atomic_write_text, write_json_atomic

COLUMNS = ("uid", "dataset", "fold", "domain", "group", "p_atypical", "decision", "threshold", "tta", "label",
           "votes_atypical", "votes_cast")
"""The columns of a prediction row, in order (``decision`` = p_atypical >= threshold, kept for readers)."""

PREDICTION_COLUMNS = ("uid", "fold", "domain", "group", "p_atypical", "decision", "label", "votes_atypical",
                      "votes_cast")
"""The first columns of a prediction CSV (the report's; the others follow in name order). ``decision`` and
``label`` are 1 (atypical) / 0 (normal); ``votes_*`` are empty when expert votes are unknown."""

CSV_COLUMNS = (*PREDICTION_COLUMNS, *sorted(set(COLUMNS) - set(PREDICTION_COLUMNS)))
"""The columns of a prediction CSV, in order (as cross-validation's ``predictions.csv`` always had them)."""

OLD_HOLDOUT_SCORES = "scores.json"
"""Where an earlier hold-out run kept the thresholds of its ``test_predictions.csv``."""


@dataclass(frozen=True)
class Prediction:
    """One figure scored one way by one model."""

    uid: str
    """The figure's id within its dataset."""
    dataset: str
    """The dataset it comes from."""
    group: str
    """Its slide (resampling for intervals draws whole slides)."""
    label: int
    """1 = atypical, 0 = normal."""
    p_atypical: float
    """The model's p(atypical)."""
    threshold: float
    """The threshold its decision is taken at (the one chosen for this way of scoring)."""
    tta: bool = False
    """Scored with 8-view TTA (else one view)."""
    domain: str = ""
    """Its domain (scanner, lab, ...), where known."""
    fold: str = ""
    """Which model scored it (a cross-validation fold's name); empty for a single model."""
    votes_atypical: int | None = None
    """Experts who called it atypical, where votes are known."""
    votes_cast: int | None = None
    """Experts who voted, where known."""

    @property
    def decision(self) -> int:
        """1 (atypical) when p(atypical) reaches the threshold."""
        return int(self.p_atypical >= self.threshold)

    @property
    def key(self) -> tuple[str, str]:
        """What pairs two predictions of the same figure: (dataset, uid)."""
        return self.dataset, self.uid

    @property
    def slide(self) -> str:
        """The slide as a unit that no two datasets share."""
        return f"{self.dataset}:{self.group}"

    def as_row(self) -> dict[str, Any]:
        """The row as plain data, in :data:`COLUMNS` order."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {column: self.decision if column == "decision" else values[column] for column in COLUMNS}


class PredictionTable(Sequence[Prediction]):
    """Predictions in order, with their columns as arrays for the metrics."""

    def __init__(self, rows: Iterable[Prediction] = ()) -> None:
        self.rows: tuple[Prediction, ...] = tuple(rows)

    @overload
    def __getitem__(self, index: int) -> Prediction: ...
    @overload
    def __getitem__(self, index: slice) -> PredictionTable: ...

    def __getitem__(self, index: int | slice) -> Prediction | PredictionTable:
        return PredictionTable(self.rows[index]) if isinstance(index, slice) else self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Prediction]:
        return iter(self.rows)

    def __add__(self, other: PredictionTable) -> PredictionTable:
        return PredictionTable(self.rows + tuple(other))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PredictionTable) and self.rows == other.rows

    def __repr__(self) -> str:
        return f"PredictionTable({len(self)} rows)"

    # -- building ---------------------------------------------------------------------------------------

    @classmethod
    def from_scores(cls, records: Sequence[FigureRecord], idx: Sequence[int] | np.ndarray, p: Sequence[float],
                    threshold: float, fold: str = "", tta: bool = False) -> PredictionTable:
        """The predictions of one model for the records at ``idx`` (scores ``p`` in the same order)."""
        rows = []
        for i, prob in zip(idx, p):
            r = records[int(i)]
            rows.append(Prediction(uid=r.uid, dataset=r.dataset, group=r.group, domain=r.domain, fold=fold,
                                   label=int(r.label), p_atypical=float(prob), threshold=float(threshold), tta=tta,
                                   votes_atypical=r.atypical_votes, votes_cast=r.votes_cast))
        return cls(rows)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> PredictionTable:
        """From plain rows (a prediction file's, or :meth:`as_rows`); a row without a needed column is refused."""
        return cls(_prediction(row) for row in rows)

    # -- columns ----------------------------------------------------------------------------------------

    def view(self, tta: bool) -> PredictionTable:
        """Only the predictions scored with TTA (``True``) or with one view (``False``)."""
        return PredictionTable(r for r in self.rows if r.tta == tta)

    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.rows], dtype=np.int64)

    def scores(self) -> np.ndarray:
        return np.array([r.p_atypical for r in self.rows], dtype=np.float64)

    def thresholds(self) -> np.ndarray:
        return np.array([r.threshold for r in self.rows], dtype=np.float64)

    def decisions(self) -> np.ndarray:
        return np.array([r.decision for r in self.rows], dtype=np.int64)

    def slides(self) -> np.ndarray:
        return np.array([r.slide for r in self.rows])

    def domains(self) -> np.ndarray:
        return np.array([r.domain for r in self.rows])

    def keys(self) -> list[tuple[str, str]]:
        return [r.key for r in self.rows]

    def as_rows(self) -> list[dict[str, Any]]:
        """Every row as plain data (what the JSON file holds and the reports take)."""
        return [r.as_row() for r in self.rows]

    # -- files ------------------------------------------------------------------------------------------

    def write_json(self, path: str | Path) -> Path:
        """The table as a JSON list of rows, written atomically."""
        return write_json_atomic(path, self.as_rows())

    def write_csv(self, path: str | Path) -> Path:
        """The table as CSV (empty cells for unknown votes), written atomically."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in self.as_rows():
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return atomic_write_text(path, buf.getvalue())


# ------------------------------------------------------------------------------------------- reading


def _optional_int(value: Any) -> int | None:
    return None if value is None or value == "" else int(float(value))


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1")


def _prediction(row: Mapping[str, Any]) -> Prediction:
    try:
        return Prediction(uid=str(row["uid"]), dataset=str(row.get("dataset") or ""), group=str(row["group"]),
                          label=int(float(row["label"])), p_atypical=float(row["p_atypical"]),
                          threshold=float(row["threshold"]), tta=_flag(row.get("tta", False)),
                          domain=str(row.get("domain") or ""), fold=str(row.get("fold") or ""),
                          votes_atypical=_optional_int(row.get("votes_atypical")),
                          votes_cast=_optional_int(row.get("votes_cast")))
    except KeyError as exc:
        raise DataError(f"a prediction row lacks the column {exc.args[0]!r} (columns: {', '.join(COLUMNS)})") from None
    except (TypeError, ValueError) as exc:
        raise DataError(f"a prediction row has a value that is not a number ({exc})") from None


def _old_holdout(path: Path, rows: list[dict[str, str]]) -> PredictionTable:
    """An earlier hold-out ``test_predictions.csv``: both ways of scoring in one row, thresholds in scores.json."""
    scores = path.parent / OLD_HOLDOUT_SCORES
    try:
        meta = json.loads(scores.read_text())
        thresholds = {False: float(meta["threshold"]), True: float(meta["threshold_tta"])}
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(f"{path}: written by an earlier version, its thresholds are read from {scores}, which is "
                        "missing or lacks threshold and threshold_tta") from None
    table: list[Prediction] = []
    for tta, column in ((False, "p_atypical"), (True, "p_atypical_tta")):
        table += [_prediction({**row, "p_atypical": row[column], "threshold": thresholds[tta], "tta": tta})
                  for row in rows]
    return PredictionTable(table)


def read_predictions(path: str | Path, tta: bool | None = None) -> PredictionTable:
    """A prediction file (JSON or CSV, this version's or an earlier one's); ``tta``: only that way of scoring."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise DataError(f"{path}: not a prediction file (a JSON list of rows)")
            table = PredictionTable.from_rows(data)
        else:
            with path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
            old_holdout = bool(rows) and "p_atypical_tta" in rows[0]
            table = _old_holdout(path, rows) if old_holdout else PredictionTable.from_rows(rows)
    except DataError as exc:
        message = str(exc)
        raise DataError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read predictions ({type(exc).__name__})") from None
    return table if tta is None else table.view(tta)


__all__ = ["COLUMNS", "CSV_COLUMNS", "PREDICTION_COLUMNS", "Prediction", "PredictionTable", "read_predictions"]
