"""Figures given as coordinates on larger images (MIDOG++ style): a CSV of image file, x, y and a label.

Columns (case-insensitive): the image (``image``/``file``/``filename``/``slide``/``path``), ``x`` and
``y`` (the figure centre in pixels; ``coordinateX``/``coordinateY`` also accepted), the label
(``label``/``class``/``majority``), optionally ``group`` (default: the image, i.e. the slide), expert
votes (``expert_1``..), domain fields and ``domain``. Figures to classify need no label: read with
``labels_optional`` (``predict``), a CSV of image, x, y alone gives unlabelled figures; without it (train,
cv, evaluate) a missing label column is refused in one line. Each figure is a 128x128 crop centred on x, y,
padded with black where it leaves the image. ``columns``/``labels`` override as for ``csv``; images
are resolved against ``images_dir`` (default: the CSV's folder, then ``images/`` beside it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mitotype.data.labels import CLASS_COLUMN, LABEL_COLUMN, MAJORITY_COLUMN
from mitotype.data.problems import ProblemLog
from mitotype.data.readers import midog25
from mitotype.data.readers._common import Entry, Table, domain_columns, find_column, read_header, read_table
from mitotype.data.readers._mapped import ColumnMap, column_map_from, label_words, read_mapped
from mitotype.data.readers.votes_csv import expert_columns
from mitotype.errors import DataError

NAME = "coords"
OPTIONS = frozenset({"images_dir", "columns", "labels", "dataset"})
IMAGE_NAMES = ("image", "file", "filename", "slide", "path")
X_NAMES, Y_NAMES = ("x", "coordinatex", "center_x", "cx"), ("y", "coordinatey", "center_y", "cy")
LABEL_NAMES = (LABEL_COLUMN, CLASS_COLUMN, MAJORITY_COLUMN)
"""A coordinates CSV's label column: ``class`` is looked for before ``majority`` (unlike a generic CSV)."""


def _roles(header: list[str]) -> dict[str, str | None]:
    """The columns every coordinates CSV needs (the label is not one: figures to classify have none)."""
    return {"image": find_column(header, *IMAGE_NAMES), "x": find_column(header, *X_NAMES),
            "y": find_column(header, *Y_NAMES)}


def _matches(header: list[str]) -> bool:
    if midog25.is_header(header):  # the MIDOG25 schema has its own reader
        return False
    return all(_roles(header).values())


def label_files(path: Path) -> list[Path]:
    if path.is_dir():
        return [p for p in sorted(path.glob("*.csv")) if _matches(read_header(p))]
    return [path] if _matches(read_header(path)) else []


def detect(path: Path) -> bool:
    return len(label_files(path)) == 1


def detected_map(table: Table, labels_optional: bool = False) -> ColumnMap:
    """The columns found by name; a label (or votes) column is required unless ``labels_optional``."""
    roles = _roles(table.header)
    label, votes = find_column(table.header, *LABEL_NAMES), expert_columns(table.header)
    missing = [name for name, col in roles.items() if col is None]
    if label is None and not votes and not labels_optional:
        missing.append("label")
    if missing:
        hint = "; figures without labels can only be predicted (mitotype predict)" if missing == ["label"] else ""
        raise DataError(f"{table.path}, row 1: missing column(s) {missing} (found {table.header}) "
                        f"[missing-columns]{hint}")
    group = find_column(table.header, "group", "patient", "case")
    return ColumnMap(image=roles["image"], label=label, votes=votes,  # type: ignore[arg-type]
                     group=group, x=roles["x"], y=roles["y"], uid=find_column(table.header, "uid", "id"),
                     meta=domain_columns(table))


def read(path: Path, log: ProblemLog, *, images_dir: str | Path | None = None,
         columns: Mapping[str, object] | None = None, labels: Mapping[str, object] | None = None,
         dataset: str | None = None) -> list[Entry]:
    found = label_files(path)
    if path.is_dir() and len(found) != 1:
        raise DataError(f"{path}: expected one coordinates CSV (image, x, y, and a label to train), found "
                        f"{[p.name for p in found]}")
    csv_path = found[0] if found else path
    table = read_table(csv_path, log)
    cmap = column_map_from(columns) if columns else detected_map(table, log.labels_optional)
    if cmap.x is None:
        raise DataError(f"{csv_path}: format 'coords' needs x and y columns")
    if images_dir:
        if not Path(images_dir).is_dir():
            raise DataError(f"{images_dir}: images folder not found")
        dirs = [Path(images_dir)]
    else:
        dirs = [csv_path.parent, csv_path.parent / "images"]
    return read_mapped(table, log, cmap, dirs=dirs, dataset=dataset or csv_path.stem,
                       words=label_words(labels), group_from_image=True)
