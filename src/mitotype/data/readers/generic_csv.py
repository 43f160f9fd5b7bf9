"""Any CSV, through the user's column mapping (format ``csv``).

Auto-detected only in its plainest form: a CSV whose header has an image column (``image``, ``file``,
``filename``, ``path``, ...) and usually a label column (``label``, ``class``, ``majority``), e.g.
``image,label`` with NMF/AMF values; then those columns (and a group column, domain fields, if present) are
used without a mapping. Detected after every specific format, so their CSVs keep their own readers. A CSV
of images without a label column gives figures to classify: read with ``labels_optional`` (``predict``) they
are unlabelled, otherwise (train, cv, evaluate) the missing label column is refused in one line.

``columns={"image": ..., "label": ..., "votes": [...] or "a,b,c", "group": ..., "x": ..., "y": ...,
"uid": ..., "domain": ..., "scanner"/"tumor"/"lab"/"species"/"source": ...}`` (``image`` and one of
``label``/``votes`` required; with ``x``/``y`` the image is a larger image and a 128x128 crop centred
there is taken). ``labels={value: normal|atypical|0|1}`` maps label and vote values (default:
Normal/NMF/0 and Atypical/AMF/1, case-insensitive). Without a label column the label is the vote
majority (a tie is an error). Images are resolved against ``images_dir`` (default: the CSV's folder).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mitotype.data.labels import LABEL_COLUMNS
from mitotype.data.problems import ProblemLog
from mitotype.data.readers._common import (
    GROUP_COLUMNS,
    IMAGE_COLUMNS,
    Entry,
    Table,
    domain_columns,
    find_column,
    read_header,
    read_table,
)
from mitotype.data.readers._mapped import ColumnMap, column_map_from, label_words, read_mapped
from mitotype.errors import ConfigError, DataError

NAME = "csv"
OPTIONS = frozenset({"images_dir", "columns", "labels", "dataset"})


def _plain(header: list[str]) -> bool:
    """An image column (a label column is what training needs, not what makes the format)."""
    return find_column(header, *IMAGE_COLUMNS) is not None


def label_files(path: Path) -> list[Path]:
    if path.is_dir():
        return [p for p in sorted(path.glob("*.csv")) if _plain(read_header(p))]
    return [path] if path.suffix.lower() == ".csv" and _plain(read_header(path)) else []


def detect(path: Path) -> bool:
    return len(label_files(path)) == 1


def detected_map(table: Table, labels_optional: bool = False) -> ColumnMap:
    """The columns found by name; the label column is required unless ``labels_optional``."""
    label = find_column(table.header, *LABEL_COLUMNS)
    if label is None and not labels_optional:
        raise DataError(f"{table.path}, row 1: missing column(s) ['label'] (found {table.header}) [missing-columns]; "
                        "figures without labels can only be predicted (mitotype predict), or map the label column "
                        "(--column label=COLUMN)")
    return ColumnMap(image=find_column(table.header, *IMAGE_COLUMNS),  # type: ignore[arg-type]
                     label=label, group=find_column(table.header, *GROUP_COLUMNS), meta=domain_columns(table))


def read(path: Path, log: ProblemLog, *, columns: Mapping[str, object] | None = None,
         labels: Mapping[str, object] | None = None, images_dir: str | Path | None = None,
         dataset: str | None = None) -> list[Entry]:
    if path.is_dir():
        found = label_files(path)
        if columns or len(found) != 1:
            raise DataError(f"{path}: format 'csv' needs the CSV file itself, not a folder")
        path = found[0]
    if not columns and not label_files(path):
        raise ConfigError("format 'csv' needs columns={'image': <column>, 'label': <column>, ...} "
                          "(CLI: --column image=<column> --column label=<column>)")
    if images_dir and not Path(images_dir).is_dir():
        raise DataError(f"{images_dir}: images folder not found")
    table = read_table(path, log)
    cmap = column_map_from(columns) if columns else detected_map(table, log.labels_optional)
    dirs = [Path(images_dir)] if images_dir else [path.parent]
    return read_mapped(table, log, cmap, dirs=dirs, dataset=dataset or path.stem,
                       words=label_words(labels), group_from_image=cmap.x is not None)
