"""One sub-folder per class (``normal/`` and ``atypical/``, also ``NMF/``/``AMF/``; names configurable).

Images are found recursively under each class folder; uid = the path relative to the dataset folder.
An optional CSV (option ``meta_csv``, else the single ``*.csv`` in the folder, if any) maps an image
(``image``/``file``/``filename``/``path`` column: the file name or the relative path) to its group and
domain fields. Without a group, each figure is its own group (reported as ``no-groups``). Images the CSV
does not list (``unlisted-image``), rows matching no image (``unmatched-row``), non-image files
(``ignored-file``) and other sub-folders holding images (``ignored-folder``) are warnings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mitotype.data import problems as P
from mitotype.data.labels import ATYPICAL, CLASS_WORDS, LABEL_WORDS, NORMAL
from mitotype.data.patches import IMAGE_SUFFIXES
from mitotype.data.problems import ProblemLog
from mitotype.data.readers._common import (
    GROUP_COLUMNS,
    Entry,
    default_domain,
    domain_columns,
    read_table,
    walk_files,
)
from mitotype.data.records import FigureRecord
from mitotype.errors import ConfigError, DataError, printable

NAME = "folder"
OPTIONS = frozenset({"class_dirs", "labels", "meta_csv", "dataset"})
DEFAULT_CLASS_DIRS: dict[str, int] = CLASS_WORDS
"""Class folders by name (lower case): ``normal``/``nmf`` and ``atypical``/``amf``."""
META_IMAGE_COLUMNS = ("image", "file", "filename", "path", "image_id")


def _class_words(class_dirs: Mapping[str, object] | Sequence[str] | None) -> dict[str, int]:
    """``{folder name (lower case): label}``; a 2-sequence means (normal folder, atypical folder)."""
    if not class_dirs:
        return dict(DEFAULT_CLASS_DIRS)
    if isinstance(class_dirs, Mapping):
        words = {}
        for name, label in class_dirs.items():
            text = str(label).lower()
            value = LABEL_WORDS.get(text)
            if value is None:
                raise ConfigError(f"class_dirs: {name!r} -> {label!r}: the label must be normal/atypical/0/1")
            words[str(name).lower()] = value
        return words
    names = list(class_dirs)
    if len(names) != 2:
        raise ConfigError("class_dirs: give (normal folder, atypical folder) or {folder: label}")
    return {names[0].lower(): NORMAL, names[1].lower(): ATYPICAL}


def class_folders(path: Path, words: Mapping[str, int]) -> list[tuple[Path, int]]:
    if not path.is_dir():
        return []
    dirs = [d for d in sorted(path.iterdir()) if d.is_dir() and d.name.lower() in words]
    return [(d, words[d.name.lower()]) for d in dirs]


def detect(path: Path) -> bool:
    return bool(class_folders(path, DEFAULT_CLASS_DIRS))


def _meta_table(path: Path, meta_csv: str | Path | None, log: ProblemLog):
    if meta_csv:
        csv_path = Path(meta_csv)
        if not csv_path.is_file():
            raise DataError(f"{csv_path}: metadata CSV not found")
    else:
        found = sorted(path.glob("*.csv"))
        if len(found) > 1:
            raise DataError(f"{path}: several CSV files {[p.name for p in found]}; name one with meta_csv")
        if not found:
            return None
        csv_path = found[0]
    table = read_table(csv_path, log)
    if table.column(*META_IMAGE_COLUMNS) is None:
        raise DataError(f"{csv_path}, row 1: missing column(s) ['image'] (found {table.header}) "
                        "[missing-columns]")
    return table


def read(path: Path, log: ProblemLog, *, class_dirs: Mapping[str, object] | Sequence[str] | None = None,
         labels: Mapping[str, object] | None = None, meta_csv: str | Path | None = None,
         dataset: str | None = None) -> list[Entry]:
    """``labels`` (CLI ``--label FOLDER=CLASS``): more class folders beside ``class_dirs`` (or the defaults)."""
    if not path.is_dir():
        raise DataError(f"{path}: format 'folder' needs a folder with one sub-folder per class")
    words = _class_words(class_dirs)
    if labels:
        words.update(_class_words(labels))
    folders = class_folders(path, words)
    if not folders:
        raise DataError(f"{path}: no class folders found (expected sub-folders named {sorted(words)})")
    for other in sorted(d for d in path.iterdir() if d.is_dir() and d.name.lower() not in words):
        # a class folder under another name (Atypical_figures/) would otherwise vanish without a word
        n_images = sum(1 for f in walk_files(other) if f.suffix.lower() in IMAGE_SUFFIXES)
        if n_images:
            log.warn(other, None, P.IGNORED_FOLDER,
                     f"{n_images} image(s) in a folder that is not a class folder ({sorted(words)}): ignored; "
                     "name its class with labels (CLI: --label FOLDER=atypical or FOLDER=normal)")
    dataset = dataset or printable(path.name)
    table = _meta_table(path, meta_csv, log)
    by_key: dict[str, tuple[int, dict[str, str]]] = {}
    cols: dict[str, str] = {}
    group_col = image_col = None
    if table is not None:
        image_col = table.column(*META_IMAGE_COLUMNS)
        group_col = table.column(*GROUP_COLUMNS)
        cols = domain_columns(table)
        for line, row in table.rows:
            by_key[row[image_col].replace("\\", "/")] = (line, row)  # type: ignore[index]
    used: set[str] = set()
    entries: list[Entry] = []
    no_group = 0
    for folder, label in folders:
        for file in walk_files(folder, log):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                log.warn(file, None, P.IGNORED_FILE, "not an image file: ignored")
                continue
            rel = printable(file.relative_to(path).as_posix())
            meta: dict[str, str] = {}
            group = ""
            if table is not None:
                key = rel if rel in by_key else file.name if file.name in by_key else None
                if key is None:
                    log.warn(file, None, P.UNLISTED_IMAGE,
                             f"not listed in {table.path.name}: no group or domain fields")
                else:
                    used.add(key)
                    _, row = by_key[key]
                    meta = {f: row[c] for f, c in cols.items() if row[c]}
                    group = row[group_col] if group_col else ""
            if not group:
                no_group += 1
            record = FigureRecord(uid=rel, image=file, label=label, group=group or rel, dataset=dataset,
                                  domain=default_domain(meta, dataset), meta=meta)
            entries.append(Entry(record, str(file), None))
    if table is not None:
        for key, (line, _) in by_key.items():
            if key not in used:
                log.warn(table.path, line, P.UNMATCHED_ROW, f"{key} matches no image in the class folders")
    if no_group:
        log.warn(path, None, P.NO_GROUPS,
                 f"{no_group} figure(s) have no group (slide/patient): each is its own group, so splits "
                 "cannot keep a slide on one side")
    return entries
