"""Any CSV, through the user's column mapping (format ``csv``; never auto-detected).

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

from mitotype.data.problems import ProblemLog
from mitotype.data.readers._common import Entry, read_table
from mitotype.data.readers._mapped import column_map_from, label_words, read_mapped
from mitotype.errors import ConfigError, DataError

NAME = "csv"
OPTIONS = frozenset({"images_dir", "columns", "labels", "dataset"})


def detect(path: Path) -> bool:
    return False


def read(path: Path, log: ProblemLog, *, columns: Mapping[str, object] | None = None,
         labels: Mapping[str, object] | None = None, images_dir: str | Path | None = None,
         dataset: str | None = None) -> list[Entry]:
    if not columns:
        raise ConfigError("format 'csv' needs columns={'image': <column>, 'label': <column>, ...} "
                          "(CLI: --column image=<column> --column label=<column>)")
    if path.is_dir():
        raise DataError(f"{path}: format 'csv' needs the CSV file itself, not a folder")
    cmap = column_map_from(columns)
    if images_dir and not Path(images_dir).is_dir():
        raise DataError(f"{images_dir}: images folder not found")
    dirs = [Path(images_dir)] if images_dir else [path.parent]
    return read_mapped(read_table(path), log, cmap, dirs=dirs, dataset=dataset or path.stem,
                       words=label_words(labels), group_from_image=cmap.x is not None)
