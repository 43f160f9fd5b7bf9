"""Figures without a label file: a folder of patches (any depth), a text list of patch paths, or one patch
(the reader named ``images``: ``--format images``).

This is what a user has before any model ran: new figures to classify. Labels are never required: a
figure under a folder named like a class (``normal``/``NMF``, ``atypical``/``AMF``, any depth, any case)
gets that label, every other figure has none (``label is None``), so ``predict`` can classify it while
``train`` refuses it. uid = the path relative to the folder (or as written in the list); each figure is
its own group, since nothing says which slide it came from.

Detected last: a folder holding image files at any depth and no CSV, a ``.txt`` file listing one path per line
(relative paths resolve against the list's folder, or ``images_dir``), or a single patch image file.
Whole-slide images are not patches and are skipped with a warning: give figures on them as x/y with the
``coords`` reader.
"""

from __future__ import annotations

from pathlib import Path

from mitotype.data import problems as P
from mitotype.data.patches import IMAGE_SUFFIXES, WSI_SUFFIXES
from mitotype.data.problems import ProblemLog
from mitotype.data.readers._common import Entry, resolve_image, walk_files
from mitotype.data.readers.folder import DEFAULT_CLASS_DIRS
from mitotype.data.records import FigureRecord
from mitotype.errors import DataError, printable

NAME = "images"
OPTIONS = frozenset({"images_dir", "dataset"})
LIST_SUFFIXES = (".txt", ".lst")
PATCH_SUFFIXES = IMAGE_SUFFIXES - WSI_SUFFIXES


def _patch_files(folder: Path, log: ProblemLog | None = None) -> list[Path]:
    return [p for p in walk_files(folder, log) if p.suffix.lower() in IMAGE_SUFFIXES]


def detect(path: Path) -> bool:
    """A ``.txt`` list, one patch file, or a folder with patches and no CSV beside them: a folder holding a
    label file that no reader understood is a broken dataset to report, not a folder of figures without labels."""
    if path.is_file():
        return path.suffix.lower() in LIST_SUFFIXES or path.suffix.lower() in PATCH_SUFFIXES
    if not path.is_dir() or any(path.glob("*.csv")):
        return False
    return any(p.suffix.lower() in PATCH_SUFFIXES for p in _patch_files(path))


def label_from_path(relative: Path) -> int | None:
    """The label of the nearest enclosing folder named like a class, or ``None``."""
    for part in reversed(relative.parts[:-1]):
        label = DEFAULT_CLASS_DIRS.get(part.lower())
        if label is not None:
            return label
    return None


def _listed(path: Path, images_dir: str | Path | None, log: ProblemLog) -> list[tuple[Path, str, int | None]]:
    log.sources.append(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text list of image paths (not UTF-8 text)") from None
    base = Path(images_dir) if images_dir else path.parent
    found = []
    for number, line in enumerate(lines, start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        found.append((resolve_image(name, [base]), name, number))
    if not found:
        raise DataError(f"{path}: lists no image paths (one path per line expected)")
    return found


def read(path: Path, log: ProblemLog, *, images_dir: str | Path | None = None,
         dataset: str | None = None) -> list[Entry]:
    dataset = dataset or printable(path.stem)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in PATCH_SUFFIXES:
            items = [(path, printable(path.name), None)]
        elif suffix in LIST_SUFFIXES:
            items = _listed(path, images_dir, log)
        else:
            raise DataError(f"{path}: format 'images' needs a folder of images, a .txt list of image paths or "
                            f"one patch image ({sorted(PATCH_SUFFIXES)})")
        source = str(path)
    else:
        root = Path(images_dir) if images_dir else path
        items = [(f, printable(f.relative_to(root).as_posix()), None) for f in _patch_files(root, log)]
        source = str(root)
        if not items and not log.problems:
            raise DataError(f"no images in {printable(root)} (looked for {sorted(PATCH_SUFFIXES)} at any depth)")
    entries: list[Entry] = []
    for file, uid, line in items:
        if file.suffix.lower() in WSI_SUFFIXES:
            log.warn(file, line, P.IGNORED_FILE,
                     "a whole-slide image, not a patch: skipped (give figures on it as x/y with --format coords)")
            continue
        record = FigureRecord(uid=uid, image=file, label=label_from_path(Path(uid)), group=uid, dataset=dataset,
                              domain=dataset)
        entries.append(Entry(record, source if line is None else str(path), line))
    return entries
