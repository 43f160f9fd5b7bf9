"""AMi-Br: ``AMI-BR.csv`` + ``patches/{normal,atypical}/{dataset}_{uid}.png`` (+ ``labels.csv`` if present).

Label = ``majority_atypical``; votes = the three ``expert*_atypical`` columns; group = ``{dataset}:{slide}``.
Scanner and benchmark split come from ``labels.csv`` when it is there; otherwise the scanner of a MIDOG21
slide follows from its number (MIDOG 2021: 001-050 Hamamatsu XR, 051-100 Hamamatsu S360, 101-150 Aperio
CS2, 151-200 Leica GT450); TUPAC16 has no scanner. Default domain: the scanner for MIDOG21, ``TUPAC16``
for TUPAC16 (four domains on the real data). Slide coordinates go to ``meta`` (``slide_x``/``slide_y``),
not to ``x``/``y``: the pixels come from the patch files. Figures to classify (``labels_optional``:
``predict``) need no labels: the vote and majority columns may be missing, and a majority that cannot be read
leaves the figure unlabelled with a warning (its patch is looked for under both class folders).
"""

from __future__ import annotations

import re
from pathlib import Path

from mitotype.data import problems as P
from mitotype.data.labels import ATYPICAL, BOOL_WORDS, parse_label, vote_majority
from mitotype.data.problems import ProblemLog
from mitotype.data.readers._common import (
    Entry,
    check_majority,
    parse_votes,
    read_header,
    read_table,
    require_columns,
    unique_uids,
)
from mitotype.data.records import FigureRecord

NAME = "amibr"
OPTIONS = frozenset({"images_dir"})
LABEL_FILE = "AMI-BR.csv"
EXTRA_FILE = "labels.csv"
VOTE_COLUMNS = ("expert1_atypical", "expert2_atypical", "expert3_atypical")
LABEL_COLUMNS = (*VOTE_COLUMNS, "majority_atypical")
"""Required for training and evaluation, optional for figures to classify."""
REQUIRED = ("slide", "dataset", "uid", *LABEL_COLUMNS)
MIDOG21_SCANNERS = ((1, 50, "Hamamatsu XR"), (51, 100, "Hamamatsu S360"), (101, 150, "Aperio CS2"),
                    (151, 200, "Leica GT450"))


def midog21_scanner(slide: str) -> str | None:
    """The scanner of a MIDOG 2021 slide from its number (``002.tiff`` -> Hamamatsu XR)."""
    match = re.match(r"0*(\d+)", Path(slide).stem)
    if not match:
        return None
    number = int(match.group(1))
    return next((name for lo, hi, name in MIDOG21_SCANNERS if lo <= number <= hi), None)


def _is_extra_header(header: list[str]) -> bool:
    lower = {h.lower() for h in header}
    return {"expert1_atypical", "n_atypical_votes", "image"} <= lower


def label_file(path: Path) -> Path | None:
    if path.is_dir():
        return path / LABEL_FILE if (path / LABEL_FILE).is_file() else None
    if path.name == LABEL_FILE:
        return path
    header = {h.lower() for h in read_header(path)}
    if {"expert1_atypical", "majority_atypical"} <= header:
        return path
    if _is_extra_header(list(header)) and (path.parent / LABEL_FILE).is_file():
        return path.parent / LABEL_FILE
    return None


def detect(path: Path) -> bool:
    return label_file(path) is not None


def _extra(root: Path, log: ProblemLog) -> dict[tuple[str, str], dict[str, str]]:
    extra = root / EXTRA_FILE
    if not extra.is_file() or not _is_extra_header(read_header(extra)):
        return {}
    table = read_table(extra, log)
    source, uid = table.column("source"), table.column("uid")
    if source is None or uid is None:
        return {}
    return {(row[source], row[uid]): row for _, row in table.rows}


def read(path: Path, log: ProblemLog, *, images_dir: str | Path | None = None) -> list[Entry]:
    csv_path = label_file(path) or (path / LABEL_FILE if path.is_dir() else path)
    root = csv_path.parent
    table = read_table(csv_path, log)
    if log.labels_optional:
        cols = require_columns(table, [c for c in REQUIRED if c not in LABEL_COLUMNS])
        cols.update({c: actual for c in LABEL_COLUMNS if (actual := table.column(c)) is not None})
    else:
        cols = require_columns(table, REQUIRED)
    vote_columns = [cols[c] for c in VOTE_COLUMNS if c in cols]
    x_col, y_col = table.column("x"), table.column("y")
    sub1, sub2 = table.column("expert1_label"), table.column("expert2_label")
    extra = _extra(root, log)
    patches = Path(images_dir) if images_dir else root / "patches"
    entries: list[Entry] = []
    for line, row in table.rows:
        dataset, uid, slide = row[cols["dataset"]], row[cols["uid"]], row[cols["slide"]]
        if not dataset or not uid:
            log.error(csv_path, line, P.BAD_VALUE, "empty dataset or uid")
            continue
        raw = row[cols["majority_atypical"]] if "majority_atypical" in cols else ""
        label = parse_label(raw, BOOL_WORDS)
        if label is None and not log.labels_optional:
            log.error(csv_path, line, P.UNKNOWN_LABEL, f"majority_atypical value {raw!r} is not True/False")
            continue
        if label is None and "majority_atypical" in cols:
            log.warn(csv_path, line, P.UNKNOWN_LABEL,
                     f"majority_atypical value {raw!r} is not True/False: the figure is kept without a label")
        votes, bad = parse_votes([row[c] for c in vote_columns], BOOL_WORDS)
        if bad is not None:
            col = vote_columns[bad]
            log.error(csv_path, line, P.UNKNOWN_LABEL, f"{col} value {row[col]!r} is not True/False")
            continue
        if label is not None:
            check_majority(log, csv_path, line, label, votes, "majority_atypical")
        elif "majority_atypical" not in cols:  # figures to classify without the majority column: the votes, if any
            label = vote_majority(votes)

        name = f"{dataset}_{uid}.png"
        if label is None:  # unlabelled: wherever the patch is
            image = next((p for p in (patches / "normal" / name, patches / "atypical" / name) if p.exists()),
                         patches / "normal" / name)
        else:
            folder, other = ("atypical", "normal") if label == ATYPICAL else ("normal", "atypical")
            image = patches / folder / name
            if not image.exists() and (patches / other / name).exists():
                log.warn(csv_path, line, P.FOLDER_LABEL_MISMATCH,
                         f"{name} lies in {other}/ but majority_atypical={raw}; label follows the CSV")
                image = patches / other / name

        more = extra.get((dataset, uid), {})
        meta = {"source": dataset, "slide": slide}
        if x_col and y_col:
            meta.update(slide_x=row[x_col], slide_y=row[y_col])
        if sub1 and sub2:
            meta.update(subtype_expert1=row[sub1], subtype_expert2=row[sub2])
        scanner = more.get("scanner") if more else (midog21_scanner(slide) if dataset == "MIDOG21" else None)
        if scanner:
            meta["scanner"] = scanner
        for key in ("benchmark_split", "midog25_image_id"):
            if more.get(key):
                meta[key] = more[key]
        if dataset == "MIDOG21" and not scanner:
            log.warn(csv_path, line, P.UNKNOWN_SCANNER, f"no scanner known for MIDOG21 slide {slide!r}")
        domain = scanner if (dataset == "MIDOG21" and scanner) else dataset
        record = FigureRecord(uid=f"{dataset}_{uid}", image=image, label=label, group=f"{dataset}:{slide}",
                              dataset=NAME, votes=votes, domain=domain, meta=meta)
        entries.append(Entry(record, str(csv_path), line))
    return unique_uids(log, entries, "figure")
