"""Problems found while reading a dataset, and the policy that decides whether they stop the read.

Nothing is dropped silently: an *error* (missing file, corrupt image, unknown label) either stops the
read (``on_error="fail"``, a one-line :class:`~mitotype.errors.DataError` naming the file and row) or
drops that one record and is reported (``on_error="skip"``). A *warning* (a quirk such as a duplicate
id, a ``majority`` that disagrees with the votes, a converted grayscale image) keeps the record and is
reported under both policies.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from mitotype.data.records import FigureRecord
from mitotype.errors import ConfigError, DataError, printable

Severity = Literal["error", "warning"]
OnError = Literal["fail", "skip"]
ON_ERROR_CHOICES: tuple[str, ...] = ("fail", "skip")

# Problem kinds (a closed vocabulary so that reports can be summarised and tests can match on them).
MISSING_FILE = "missing-file"
CORRUPT_IMAGE = "corrupt-image"
WRONG_SIZE = "wrong-size"
CONVERTED_MODE = "converted-mode"
UNKNOWN_LABEL = "unknown-label"
MISSING_COLUMNS = "missing-columns"
BAD_VALUE = "bad-value"
OUTSIDE_IMAGE = "outside-image"
DUPLICATE_ID = "duplicate-id"
MAJORITY_DISAGREES = "majority-disagrees"
CONFLICTING_DUPLICATE = "conflicting-duplicate"
DUPLICATE_IMAGE = "duplicate-image"
FOLDER_LABEL_MISMATCH = "folder-label-mismatch"
NO_GROUPS = "no-groups"
UNLISTED_IMAGE = "unlisted-image"
UNMATCHED_ROW = "unmatched-row"
IGNORED_FILE = "ignored-file"
IGNORED_FOLDER = "ignored-folder"
UNKNOWN_SCANNER = "unknown-scanner"
UNSUPPORTED_IMAGE = "unsupported-image"
MULTI_PAGE = "multi-page"
GROUP_SPANS_DOMAINS = "group-spans-domains"
BROKEN_LINK = "broken-link"
BLANK_IMAGE = "blank-image"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with (or odd about) the input.

    ``file`` is the file the problem is in (the label CSV for a row problem, the image for an image
    problem); ``row`` is the 1-based line number in that file (the header is line 1), ``None`` when the
    problem is not about one line.
    """

    file: str
    row: int | None
    kind: str
    message: str
    severity: Severity = "error"

    @property
    def location(self) -> str:
        return f"{self.file}, row {self.row}" if self.row is not None else self.file

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class ReadResult:
    """The records a reader kept and every problem it found (errors dropped records, warnings did not)."""

    records: list[FigureRecord]
    problems: list[Problem] = field(default_factory=list)
    fmt: str = ""
    """The format that was read (useful when it was auto-detected)."""
    path: Path | None = None
    sources: list[Path] = field(default_factory=list)
    """The label, list and metadata files the reader read (see :attr:`ProblemLog.sources`)."""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def problem_counts(self) -> dict[tuple[str, str], int]:
        """``{(severity, kind): count}``, errors first, then by count."""
        counts = Counter((p.severity, p.kind) for p in self.problems)
        return dict(sorted(counts.items(), key=lambda kv: (kv[0][0] != "error", -kv[1], kv[0][1])))

    def of_kind(self, kind: str) -> list[Problem]:
        return [p for p in self.problems if p.kind == kind]


def check_on_error(on_error: str) -> OnError:
    if on_error not in ON_ERROR_CHOICES:
        raise ConfigError(f"on_error must be one of {list(ON_ERROR_CHOICES)}, not {on_error!r}")
    return on_error  # type: ignore[return-value]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class ProblemLog:
    """Collects problems under an ``on_error`` policy; under ``"fail"`` the first error raises."""

    def __init__(self, on_error: str = "fail", labels_optional: bool = False) -> None:
        self.on_error: OnError = check_on_error(on_error)
        self.labels_optional = labels_optional
        """Reading figures to classify: a label that cannot be read is a warning and leaves the figure
        unlabelled, instead of an error that drops or stops it."""
        self.problems: list[Problem] = []
        self.sources: list[Path] = []
        """The label, list and metadata files read (not the images): a command must not write over them."""

    def error(self, file: str | Path, row: int | None, kind: str, message: str) -> None:
        """Report an error: raise :class:`DataError` under ``"fail"``, else record it (caller drops)."""
        problem = Problem(printable(file), row, kind, _one_line(printable(message)), "error")
        if self.on_error == "fail":
            hint = "on_error='skip' drops such records and reports them"
            if kind == MISSING_FILE:  # a label file without its images: skipping would drop every row
                hint += "; to read the labels alone, `mitotype data inspect --check none`"
            raise DataError(f"{problem} [{kind}; {hint}]")
        self.problems.append(problem)

    def warn(self, file: str | Path, row: int | None, kind: str, message: str) -> None:
        """Report a quirk: the record is kept under both policies."""
        self.problems.append(Problem(printable(file), row, kind, _one_line(printable(message)), "warning"))
