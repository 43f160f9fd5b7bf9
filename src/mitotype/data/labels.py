"""The label vocabulary, in one place: the two classes as numbers and as words, the ways datasets spell a label,
a vote or a class folder, and the columns that hold labels. Readers, reports, the challenge outputs and the API
take their spellings from here.

Atypical is the positive class everywhere: label 1 (AMF, atypical mitotic figure), and every probability is
p(atypical); normal is 0 (NMF).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

NORMAL, ATYPICAL = 0, 1
"""Atypical is the positive class everywhere (label 1, probability p(atypical))."""

CLASS_NAMES: dict[int, str] = {NORMAL: "normal", ATYPICAL: "atypical"}
"""A label or a decision as outputs write it (``predict``'s ``class`` column, the challenge JSON, reports)."""

MIDOG_NAMES: dict[int, str] = {NORMAL: "NMF", ATYPICAL: "AMF"}
"""The MIDOG spelling (normal / atypical mitotic figure): MIDOG25's expert and majority columns, data tables."""

CLASS_WORDS: dict[str, int] = {"normal": NORMAL, "nmf": NORMAL, "atypical": ATYPICAL, "amf": ATYPICAL}
"""A class by its name (lower case): class folders, MIDOG25's votes and majority."""

LABEL_WORDS: dict[str, int] = {"normal": NORMAL, "nmf": NORMAL, "0": NORMAL,
                               "atypical": ATYPICAL, "amf": ATYPICAL, "1": ATYPICAL}
"""Default label values (case-insensitive): Normal/NMF/0 and Atypical/AMF/1."""

BOOL_WORDS: dict[str, int] = {"true": ATYPICAL, "false": NORMAL, "1": ATYPICAL, "0": NORMAL}
"""Values of ``*_atypical`` columns (AMi-Br)."""

CLASS_FOLDER_NAMES = tuple(f(w) for w in ("atypical", "normal", "amf", "nmf") for f in (str, str.title, str.upper))
"""Sub-folders a label file's images may sit in although its file names do not say so (``Atypical/x.png``)."""

LABEL_COLUMN, MAJORITY_COLUMN, CLASS_COLUMN = "label", "majority", "class"
"""Names of the columns that may hold a figure's label (the experts' majority in MIDOG25 and vote tables)."""

LABEL_COLUMNS = (LABEL_COLUMN, MAJORITY_COLUMN, CLASS_COLUMN)
"""The label columns in the order a generic CSV is searched for one."""


def parse_label(value: str, words: Mapping[str, int] = LABEL_WORDS) -> int | None:
    """The label ``value`` spells in ``words`` (case and surrounding spaces ignored), else ``None``."""
    return words.get(value.strip().lower())


def midog_name(label: int | None) -> str:
    """``AMF``, ``NMF``, or ``tie`` where the votes give no label."""
    return MIDOG_NAMES.get(label, "tie") if label is not None else "tie"


def vote_name(vote: bool) -> str:
    """One expert's vote in the MIDOG spelling: ``AMF`` for atypical, ``NMF`` for normal."""
    return MIDOG_NAMES[ATYPICAL if vote else NORMAL]


def vote_majority(votes: Sequence[bool | None]) -> int | None:
    """The plain majority of the votes cast (``True`` = atypical); ``None`` for a tie or no vote."""
    yes = sum(v is True for v in votes)
    no = sum(v is False for v in votes)
    if yes == no:
        return None
    return ATYPICAL if yes > no else NORMAL


__all__ = [
    "ATYPICAL",
    "BOOL_WORDS",
    "CLASS_COLUMN",
    "CLASS_FOLDER_NAMES",
    "CLASS_NAMES",
    "CLASS_WORDS",
    "LABEL_COLUMN",
    "LABEL_COLUMNS",
    "LABEL_WORDS",
    "MAJORITY_COLUMN",
    "MIDOG_NAMES",
    "NORMAL",
    "midog_name",
    "parse_label",
    "vote_majority",
    "vote_name",
]
