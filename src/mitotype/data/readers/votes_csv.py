"""Per-expert vote CSVs (AtNorM style): ``Filename, Expert_1..Expert_n, Majority``.

Values Normal/Atypical (also NMF/AMF, 0/1), case-insensitive; an empty vote is a vote not cast.
Label = ``Majority`` (a disagreement with the vote count is a warning; the label follows ``Majority``);
without a ``Majority`` column, the plain majority of the votes (a tie is an error, or, for figures to
classify (``labels_optional``), a figure kept without a label).
Images beside the CSV, in ``images/`` beside it, or in ``images_dir``. Optional columns: a group
(``group``/``slide``/``patient``/``case``), domain fields (``scanner``, ``tumor``, ``lab``, ``species``,
``source``) and a free ``domain``. ``columns={role: column}`` overrides the detected columns and
``labels={value: normal|atypical}`` the label values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from mitotype.data.labels import MAJORITY_COLUMN
from mitotype.data.problems import ProblemLog
from mitotype.data.readers import midog25
from mitotype.data.readers._common import (
    GROUP_COLUMNS,
    Entry,
    Table,
    domain_columns,
    find_column,
    read_header,
    read_table,
)
from mitotype.data.readers._mapped import ColumnMap, column_map_from, label_words, read_mapped
from mitotype.errors import DataError

NAME = "votes-csv"
OPTIONS = frozenset({"images_dir", "columns", "labels", "dataset"})
_EXPERT = re.compile(r"^expert[\s_\-]*(\d+)$", re.IGNORECASE)


def expert_columns(header: list[str]) -> list[str]:
    found = [(int(m.group(1)), h) for h in header if (m := _EXPERT.match(h.strip()))]
    return [h for _, h in sorted(found)]


def _matches(header: list[str]) -> bool:
    if midog25.is_header(header):  # the MIDOG25 schema has its own reader
        return False
    if find_column(header, "x", "coordinatex") and find_column(header, "y", "coordinatey"):
        return False  # figures as x/y on larger images: the coords reader (which takes votes too)
    return find_column(header, "filename", "file", "image") is not None and bool(expert_columns(header))


def label_files(path: Path) -> list[Path]:
    if path.is_dir():
        return [p for p in sorted(path.glob("*.csv")) if _matches(read_header(p))]
    return [path] if _matches(read_header(path)) else []


def detect(path: Path) -> bool:
    return len(label_files(path)) == 1


def detected_map(table: Table) -> ColumnMap:
    image = find_column(table.header, "filename", "file", "image")
    majority = find_column(table.header, MAJORITY_COLUMN)  # optional: the votes give the label without it
    votes = expert_columns(table.header)
    if image is None or (majority is None and not votes):
        missing = [n for n, c in (("Filename", image), ("Majority", majority or votes)) if not c]
        raise DataError(f"{table.path}, row 1: missing column(s) {missing} (found {table.header}) "
                        "[missing-columns]")
    return ColumnMap(image=image, label=majority, votes=votes,
                     group=find_column(table.header, *GROUP_COLUMNS), meta=domain_columns(table))


def image_dirs(csv_path: Path, images_dir: str | Path | None) -> list[Path]:
    if images_dir:
        if not Path(images_dir).is_dir():
            raise DataError(f"{images_dir}: images folder not found")
        return [Path(images_dir)]
    return [csv_path.parent, csv_path.parent / "images"]


def read(path: Path, log: ProblemLog, *, images_dir: str | Path | None = None,
         columns: Mapping[str, object] | None = None, labels: Mapping[str, object] | None = None,
         dataset: str | None = None) -> list[Entry]:
    found = label_files(path)
    if path.is_dir() and len(found) != 1:
        raise DataError(f"{path}: expected one votes CSV (Filename, Expert_1.., Majority), found "
                        f"{[p.name for p in found]}")
    csv_path = found[0] if found else path
    table = read_table(csv_path, log)
    cmap = column_map_from(columns) if columns else detected_map(table)
    return read_mapped(table, log, cmap, dirs=image_dirs(csv_path, images_dir),
                       dataset=dataset or csv_path.stem, words=label_words(labels))
