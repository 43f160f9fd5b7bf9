"""What every reader shares: CSV access, label and vote parsing, the image check and duplicate search."""

from __future__ import annotations

import csv
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from mitotype.data import problems as P
from mitotype.data.labels import (
    ATYPICAL,
    CLASS_FOLDER_NAMES,
    midog_name,
    parse_label,
    vote_majority,
    vote_name,
)
from mitotype.data.patches import (
    DEFAULT_SIZE_POLICY,
    IMAGE_SUFFIXES,
    PATCH_SIZE,
    ImageCheck,
    check_image,
    default_workers,
)
from mitotype.data.problems import ProblemLog
from mitotype.data.records import DOMAIN_FIELDS, FigureRecord
from mitotype.errors import ConfigError, DataError, printable
from mitotype.paths import special_file_kind

CHECK_LEVELS: tuple[str, ...] = ("full", "header", "exists", "none")
"""How much of each image a reader checks: ``full`` decodes every pixel (finds truncated files and
identical re-encoded images), ``header`` reads headers and hashes bytes, ``exists`` only looks for
the files, ``none`` reads the labels only (for inspecting a label file without its images)."""

COMMON_OPTIONS = frozenset({"check", "size", "size_policy", "workers"})

GROUP_COLUMNS = ("group", "slide", "patient", "case", "wsi")
IMAGE_COLUMNS = ("image", "filename", "file", "image_id", "path", "file_name")
PREFERRED_DOMAIN_FIELDS = ("tumor", "scanner", "lab", "species", "source")
"""Default domain of the generic readers: a ``domain`` column, else the first present field of these."""


def walk_files(root: Path, log: ProblemLog | None = None) -> list[Path]:
    """Every file under ``root`` at any depth (hidden files left out), sorted by path.

    Linked folders are followed, as a user who links a slide's patches into a dataset expects, each real
    folder at most once (a link back up the tree or to a folder already read is reported and not followed
    again, so a loop ends). A broken link named like an image or a folder is an error (a figure that cannot be
    read, or a whole linked folder gone), any other broken link and a FIFO, socket or device a warning; all
    are reported to ``log`` when given, and none is returned.
    """
    found: list[Path] = []
    seen: dict[tuple[int, int], Path] = {}

    def visit(folder: Path) -> None:
        try:
            info = folder.stat()
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            if log is not None:
                log.error(folder, None, P.MISSING_FILE, f"cannot read this folder ({exc.strerror or exc})")
            return
        key = (info.st_dev, info.st_ino)
        if key in seen:
            if log is not None:
                log.warn(folder, None, P.IGNORED_FOLDER, f"a link to a folder already read ({seen[key]}): not "
                         "read again (a loop, or the same figures twice)")
            return
        seen[key] = folder
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows links
                is_file = not is_dir and entry.is_file()
            except OSError:
                is_dir = is_file = False
            if is_dir:
                visit(path)
            elif entry.name.startswith("."):
                continue
            elif is_file:
                found.append(path)
            elif log is None:
                continue
            elif entry.is_symlink() and not path.exists():
                message = f"broken link (-> {printable(os.readlink(path))}): its target does not exist"
                if path.suffix.lower() in IMAGE_SUFFIXES or not path.suffix:  # a figure, or a folder of them
                    log.error(path, None, P.BROKEN_LINK, message)
                else:
                    log.warn(path, None, P.BROKEN_LINK, message)
            elif (kind := special_file_kind(path)) is not None:
                log.warn(path, None, P.IGNORED_FILE, f"{kind}, not a file: ignored")

    visit(root)
    return sorted(found)


@dataclass
class Entry:
    """A record on its way through a reader, with where it came from (for problems)."""

    record: FigureRecord
    source: str
    row: int | None

    @property
    def where(self) -> str:
        return f"{self.source}, row {self.row}" if self.row is not None else self.source


@dataclass
class Table:
    """A CSV file: its header and its rows as ``(line number, {column: value})``."""

    path: Path
    header: list[str]
    rows: list[tuple[int, dict[str, str]]]

    def column(self, *names: str) -> str | None:
        """The header name matching one of ``names`` (case- and space-insensitive), in that order."""
        return find_column(self.header, *names)


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def find_column(header: Sequence[str], *names: str) -> str | None:
    normalised = {_norm(h): h for h in header}
    for name in names:
        if _norm(name) in normalised:
            return normalised[_norm(name)]
    return None


def read_header(path: Path) -> list[str]:
    """The header of a CSV (cheap: for format detection); ``[]`` when it is not a readable CSV."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [h.strip() for h in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def csv_problem(path: Path) -> str | None:
    """Why a label file could not be read as a comma-separated UTF-8 CSV (encoding, delimiter, empty), or
    ``None``: format detection fails silently on such a file, so its failure message names the cause."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    if not head.strip():
        return "empty file"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text; save it as UTF-8"
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not merely a character cut at the end of the sample
            return f"not UTF-8 ({exc.reason} at byte {exc.start}); save it as UTF-8"
        text = head[: exc.start].decode("utf-8-sig", errors="ignore")
    first = text.splitlines()[0] if text.splitlines() else ""
    if "," not in first:
        for delimiter, name in ((";", "semicolons"), ("\t", "tabs")):
            if delimiter in first:
                return f"its header is separated by {name}, not commas; save it as comma-separated CSV"
    return None


def read_table(path: Path, log: ProblemLog | None = None) -> Table:
    """All rows of a CSV, keyed by the (stripped) header; line numbers count the header as line 1.

    A row with more non-empty values than the header has columns (usually an unquoted comma inside a
    value, which shifts every later column) is an error: reported to ``log`` and left out, or raised
    when there is no log. Empty surplus values (a trailing comma) are ignored. The file joins ``log.sources``.
    """
    if log is not None:
        log.sources.append(Path(path))
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if not header:
                raise DataError(f"{path}: empty file, expected a CSV header")
            _check_unique_header(path, header)
            rows = []
            for values in reader:
                if not any(v.strip() for v in values):
                    continue
                if any(v.strip() for v in values[len(header):]):
                    message = (f"{len(values)} values but the header has {len(header)} columns "
                               "(an unquoted comma inside a value?)")
                    if log is None:
                        raise DataError(f"{path}, line {reader.line_num}: {message}")
                    log.error(path, reader.line_num, P.BAD_VALUE, message)
                    continue
                padded = list(values) + [""] * (len(header) - len(values))
                rows.append((reader.line_num, {h: v.strip() for h, v in zip(header, padded)}))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 CSV file ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return Table(path, header, rows)


def _check_unique_header(path: Path, header: Sequence[str]) -> None:
    """A column named twice (as columns are looked up: case- and space-insensitive) is an error: the rows
    are keyed by name, so one of the two would be dropped without a word (the last one read wins)."""
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        if not name:  # unnamed columns (a pandas index, trailing commas) are never looked up
            continue
        first = seen.setdefault(_norm(name), i)
        if first != i:
            spelled = "" if header[first - 1] == name else f", as {header[first - 1]!r} and {name!r}"
            raise DataError(f"{path}, row 1: column {name!r} occurs twice in the header (columns {first} and "
                            f"{i}{spelled}); rename or remove one [{P.BAD_VALUE}]")


def require_columns(table: Table, required: Iterable[str]) -> dict[str, str]:
    """``{wanted: actual header name}``; a :class:`DataError` listing every missing column otherwise."""
    found, missing = {}, []
    for name in required:
        actual = table.column(name)
        if actual is None:
            missing.append(name)
        else:
            found[name] = actual
    if missing:
        raise DataError(
            f"{table.path}, row 1: missing column(s) {missing} (found {table.header}) [{P.MISSING_COLUMNS}]"
        )
    return found


def parse_votes(values: Sequence[str], words: Mapping[str, int]
                ) -> tuple[tuple[bool | None, ...], int | None]:
    """Votes (empty = not cast) and the index of the first value that is not a known label."""
    votes: list[bool | None] = []
    for i, value in enumerate(values):
        if not value.strip():
            votes.append(None)
            continue
        label = parse_label(value, words)
        if label is None:
            return tuple(votes), i
        votes.append(label == ATYPICAL)
    return tuple(votes), None


def check_majority(log: ProblemLog, file: Path | str, row: int | None, label: int,
                   votes: Sequence[bool | None], label_column: str) -> None:
    """Warn when the given label differs from the plain vote count (the label is kept)."""
    if not any(v is not None for v in votes):
        return
    plain = vote_majority(votes)
    if plain == label:
        return
    yes = sum(v is True for v in votes)
    cast = sum(v is not None for v in votes)
    shown = ", ".join("-" if v is None else vote_name(v) for v in votes)
    count = "a tie" if plain is None else midog_name(plain)
    log.warn(file, row, P.MAJORITY_DISAGREES,
             f"{label_column} says {midog_name(label)} but the votes ({shown}: {yes} of {cast} atypical) "
             f"give {count}; the label follows {label_column} ({midog_name(label)})")


def resolve_image(name: str, dirs: Sequence[Path]) -> Path:
    """The first existing ``dir/name``, else ``dir/<class folder>/name`` (file names that lack the class
    sub-folder their image sits in); the first candidate when none exists (reported missing later)."""
    candidate = Path(name)
    if candidate.is_absolute():
        return candidate
    for d in dirs:
        if (d / name).exists():
            return d / name
    for d in dirs:
        for sub in CLASS_FOLDER_NAMES:
            if (d / sub / name).exists():
                return d / sub / name
    return dirs[0] / name


def unique_uids(log: ProblemLog, entries: list[Entry], id_name: str = "image id") -> list[Entry]:
    """Entries whose uid occurs more than once get ``uid#row<line>`` (all of them), with one warning each."""
    by_uid: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(entries):
        by_uid[e.record.uid].append(i)
    out = list(entries)
    for uid, idx in by_uid.items():
        if len(idx) < 2:
            continue
        rows = [entries[i].row for i in idx]
        centres = {(entries[i].record.meta.get("slide_x"), entries[i].record.meta.get("slide_y"),
                    entries[i].record.x, entries[i].record.y) for i in idx}
        new_uids = []
        for i in idx:
            e = entries[i]
            new_uid = f"{uid}#row{e.row}" if e.row is not None else f"{uid}#{i}"
            new_uids.append(new_uid)
            out[i] = replace(e, record=replace(e.record, uid=new_uid))
        distinct = f"; {len(centres)} distinct coordinates" if len(centres) > 1 else ""
        log.warn(entries[idx[0]].source, rows[0], P.DUPLICATE_ID,
                 f"{id_name} {uid} occurs {len(idx)} times (rows {', '.join(map(str, rows))}{distinct}); "
                 f"all kept, as {', '.join(new_uids)}")
    return out


def default_domain(meta: Mapping[str, str], fallback: str) -> str:
    """The generic readers' default domain: a ``domain`` column, else the first preferred field present."""
    if meta.get("domain"):
        return meta["domain"]
    for name in PREFERRED_DOMAIN_FIELDS:
        if meta.get(name):
            return meta[name]
    return fallback


def domain_columns(table: Table) -> dict[str, str]:
    """``{meta field: header}`` for the domain fields (and a ``domain`` column) a table carries."""
    found = {}
    for name in (*DOMAIN_FIELDS, "domain"):
        col = table.column(name)
        if col is not None:
            found[name] = col
    return found


def check_options(fmt: str, options: Mapping[str, object], allowed: Iterable[str]) -> None:
    allowed = set(allowed) | COMMON_OPTIONS
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for format {fmt!r}; accepted: {sorted(allowed)}")


def check_level(check: str) -> str:
    if check not in CHECK_LEVELS:
        raise ConfigError(f"check must be one of {list(CHECK_LEVELS)}, not {check!r}")
    return check


def check_images(entries: list[Entry], log: ProblemLog, *, check: str = "full", size: int = PATCH_SIZE,
                 policy: str = DEFAULT_SIZE_POLICY, workers: int | None = None) -> list[FigureRecord]:
    """The records whose images exist and decode, reporting the rest; then the duplicate-image search.

    Each distinct file is checked once (in a thread pool); a problem with a file is reported for every
    row that uses it (errors) or once naming those rows (warnings).
    """
    check_level(check)
    if check == "none":
        return [e.record for e in entries]
    kept: list[Entry] = []
    for e in entries:
        if Path(e.record.image).is_file():
            kept.append(e)
        elif (kind := special_file_kind(e.record.image)) is not None:  # reading it would wait for a writer
            log.error(e.source, e.row, P.MISSING_FILE, f"{e.record.image} is {kind}, not an image file")
        else:
            log.error(e.source, e.row, P.MISSING_FILE, f"image file not found: {e.record.image}")
    if check == "exists":
        return [e.record for e in kept]

    by_path: dict[Path, list[Entry]] = defaultdict(list)
    for e in kept:
        by_path[Path(e.record.image)].append(e)
    full = check == "full"

    def check_file(item: tuple[Path, list[Entry]]) -> ImageCheck:
        path, group = item
        return check_image(path, full=full, crop=group[0].record.is_crop, size=size, policy=policy)

    with ThreadPoolExecutor(workers or default_workers()) as pool:
        results = list(pool.map(check_file, by_path.items(), chunksize=16))

    good: list[tuple[Entry, ImageCheck]] = []
    for (path, group), result in zip(by_path.items(), results):
        if result.error is not None:
            for e in group:
                log.error(path, None, result.error.kind, f"{result.error.message}{_listed_at([e], path)}")
            continue
        listed = _listed_at(group, path)
        for kind, message in result.notes:
            log.warn(path, None, kind, f"{message}{listed}")
        for e in group:
            r = e.record
            if r.is_crop and result.width is not None and result.height is not None and not (
                0 <= int(r.x) < result.width and 0 <= int(r.y) < result.height  # type: ignore[arg-type]
            ):
                log.error(e.source, e.row, P.OUTSIDE_IMAGE, f"figure centre ({r.x}, {r.y}) lies outside "
                          f"{path} ({result.width}x{result.height})")
                continue
            good.append((e, result))
    _report_duplicates(good, log)
    return [e.record for e, _ in good]


def _listed_at(group: Sequence[Entry], image: Path, limit: int = 5) -> str:
    """`` (listed at labels.csv, row 4; ...)``: where the image was named, or nothing when no file or line
    named it (a patch found in a folder, or the patch given alone), since the image's own path says it all."""
    named = [e for e in group if e.row is not None or not (e.source == str(image) or Path(e.source).is_dir())]
    if not named:
        return ""
    shown = [e.where for e in named[:limit]]
    more = f" and {len(named) - limit} more" if len(named) > limit else ""
    return f" (listed at {'; '.join(shown)}{more})"


def _report_duplicates(good: Sequence[tuple[Entry, ImageCheck]], log: ProblemLog) -> None:
    """Identical pixels (or file bytes) under different files: a warning, louder when labels conflict."""
    groups: dict[tuple, list[Entry]] = defaultdict(list)
    for e, result in good:
        if result.digest is not None:
            groups[(result.digest, e.record.x, e.record.y)].append(e)
    for members in groups.values():
        labels = {e.record.label for e in members}
        files = {str(e.record.image) for e in members}
        if len(labels) > 1:
            detail = ", ".join(f"{e.record.uid} ({midog_name(e.record.label)}, {e.where})" for e in members)
            log.warn(members[0].record.image, None, P.CONFLICTING_DUPLICATE,
                     f"identical image with conflicting labels: {detail}")
        elif len(files) > 1:
            detail = ", ".join(f"{e.record.uid} ({e.where})" for e in members)
            log.warn(members[0].record.image, None, P.DUPLICATE_IMAGE,
                     f"identical image under {len(files)} files (same label; may leak across splits): "
                     f"{detail}")

