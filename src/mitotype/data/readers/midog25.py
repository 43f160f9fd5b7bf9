"""MIDOG 2025 Track 2 training set: the official CSV plus a folder of ``image_id`` PNG patches.

Label = ``majority`` (kept even where it differs from the plain vote count: that is reported as a
``majority-disagrees`` warning naming the row); votes = ``expert1..3`` (``expert3`` empty = not cast,
because experts 1 and 2 agreed); group = ``filename`` (the slide); meta tumor/scanner/lab (``Origin``)/
species; default domain = tumor. An ``image_id`` that occurs more than once (``8925.png`` in the real
file) keeps every row, as ``8925.png#row<line>``, with a ``duplicate-id`` warning.
Images: option ``images_dir``; default ``images/`` beside the CSV when that folder exists, else the
CSV's own folder. Figures to classify (``labels_optional``: ``predict``) need no labels: the expert and
``majority`` columns may be missing (a test set's CSV), and a ``majority`` that cannot be read leaves the
figure unlabelled with a warning.
"""

from __future__ import annotations

from pathlib import Path

from mitotype.data import problems as P
from mitotype.data.labels import CLASS_WORDS, parse_label, vote_majority
from mitotype.data.problems import ProblemLog
from mitotype.data.readers._common import (
    Entry,
    check_majority,
    parse_votes,
    read_header,
    read_table,
    require_columns,
    resolve_image,
    unique_uids,
)
from mitotype.data.records import FigureRecord
from mitotype.errors import DataError

NAME = "midog25"
OPTIONS = frozenset({"images_dir"})
COLUMNS = ("image_id", "filename", "coordinateX", "coordinateY", "Tumor", "Scanner", "Origin", "Species",
           "expert1", "expert2", "expert3", "majority")
VOTES = ("expert1", "expert2", "expert3")
LABEL_COLUMNS = (*VOTES, "majority")
"""The columns that hold labels: required for training and evaluation, optional for figures to classify."""
META = {"tumor": "Tumor", "scanner": "Scanner", "lab": "Origin", "species": "Species"}
_SIGNATURE_ANY = {"expert1", "coordinatex", "majority"}
"""``image_id`` plus one of these: the MIDOG25 schema (its other columns may be missing: then say so)."""
_MIDOG_ONLY = {"expert1", "expert2", "expert3", "coordinatex", "coordinatey", "majority"}


def is_header(header: list[str]) -> bool:
    """Whether a CSV header looks like the MIDOG25 schema (then missing columns are reported as such)."""
    names = {h.strip().lower() for h in header}
    # Without image_id, two MIDOG25-only columns still say which schema it is (then the missing image_id
    # is reported, instead of another reader taking `filename`, the slide, for the image).
    return ("image_id" in names and bool(names & _SIGNATURE_ANY)) or len(names & _MIDOG_ONLY) >= 2


def is_label_file(path: Path) -> bool:
    return path.suffix.lower() == ".csv" and is_header(read_header(path))


def label_files(path: Path) -> list[Path]:
    if path.is_dir():
        return [p for p in sorted(path.glob("*.csv")) if is_label_file(p)]
    return [path] if is_label_file(path) else []


def detect(path: Path) -> bool:
    return len(label_files(path)) == 1


def image_dirs(csv_path: Path, images_dir: str | Path | None) -> list[Path]:
    if images_dir:
        return [Path(images_dir)]
    beside = csv_path.parent / "images"
    return [beside] if beside.is_dir() else [csv_path.parent]


def read(path: Path, log: ProblemLog, *, images_dir: str | Path | None = None) -> list[Entry]:
    found = label_files(path)
    if path.is_dir() and len(found) != 1:
        others = [p for p in sorted(path.glob("*.csv")) if p not in found]
        if not found and len(others) == 1:
            read_table(others[0])  # an empty or unreadable CSV says so itself
            raise DataError(f"{others[0]}: not a MIDOG25 label CSV (its header lacks image_id and the "
                            f"expert/majority columns: {read_header(others[0])[:8]})")
        why = f"; other CSV files: {[p.name for p in others]}" if others else ""
        raise DataError(f"{path}: expected one MIDOG25 label CSV, found {[p.name for p in found]}{why}")
    csv_path = found[0] if found else path
    table = read_table(csv_path, log)
    if log.labels_optional:
        cols = require_columns(table, [c for c in COLUMNS if c not in LABEL_COLUMNS])
        cols.update({c: actual for c in LABEL_COLUMNS if (actual := table.column(c)) is not None})
    else:
        cols = require_columns(table, COLUMNS)
    vote_columns = [cols[c] for c in VOTES if c in cols]
    dirs = image_dirs(csv_path, images_dir)
    if images_dir and not dirs[0].is_dir():
        raise DataError(f"{images_dir}: images folder not found")
    entries: list[Entry] = []
    for line, row in table.rows:
        image_id = row[cols["image_id"]]
        if not image_id:
            log.error(csv_path, line, P.BAD_VALUE, "empty image_id")
            continue
        label = None
        if "majority" in cols:
            raw = row[cols["majority"]]
            label = parse_label(raw, CLASS_WORDS)
            if label is None and not log.labels_optional:
                log.error(csv_path, line, P.UNKNOWN_LABEL, f"majority value {raw!r} is not NMF/AMF")
                continue
            if label is None:
                log.warn(csv_path, line, P.UNKNOWN_LABEL,
                         f"majority value {raw!r} is not NMF/AMF: the figure is kept without a label")
        votes, bad = parse_votes([row[c] for c in vote_columns], CLASS_WORDS)
        if bad is not None:
            col = vote_columns[bad]
            log.error(csv_path, line, P.UNKNOWN_LABEL, f"{col} value {row[col]!r} is not NMF/AMF")
            continue
        if label is not None:
            check_majority(log, csv_path, line, label, votes, "majority")
        elif "majority" not in cols:  # figures to classify whose CSV has no majority column: the votes, if any
            label = vote_majority(votes)
        meta = {field: row[cols[col]] for field, col in META.items() if row[cols[col]]}
        slide = row[cols["filename"]]
        meta.update(slide=slide, slide_x=row[cols["coordinateX"]], slide_y=row[cols["coordinateY"]],
                    image_id=image_id)
        record = FigureRecord(uid=image_id, image=resolve_image(image_id, dirs), label=label,
                              group=slide or f"image:{image_id}", dataset=NAME, votes=votes,
                              domain=meta.get("tumor", "unknown tumor"), meta=meta)
        entries.append(Entry(record, str(csv_path), line))
    return unique_uids(log, entries, "image_id")
