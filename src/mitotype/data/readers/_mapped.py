"""A CSV read through a column mapping: the engine of the ``votes-csv``, ``csv`` and ``coords`` formats."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mitotype.data import problems as P
from mitotype.data.labels import ATYPICAL, LABEL_WORDS, NORMAL, parse_label, vote_majority
from mitotype.data.problems import ProblemLog
from mitotype.data.readers._common import (
    Entry,
    Table,
    check_majority,
    default_domain,
    parse_votes,
    require_columns,
    resolve_image,
    unique_uids,
)
from mitotype.data.records import DOMAIN_FIELDS, FigureRecord
from mitotype.errors import ConfigError

ROLES = ("image", "label", "votes", "group", "x", "y", "uid", "domain", *DOMAIN_FIELDS)
"""Column roles a user may map (``votes`` is a list of columns; the domain fields go to ``meta``)."""


@dataclass
class ColumnMap:
    """Which CSV column plays which role (``None``: the CSV has no such column)."""

    image: str
    label: str | None = None
    votes: list[str] = field(default_factory=list)
    group: str | None = None
    x: str | None = None
    y: str | None = None
    uid: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    """``{meta field: column}`` for the domain fields and a free ``domain`` column."""

    def columns(self) -> list[str]:
        cols = [self.image, self.label, *self.votes, self.group, self.x, self.y, self.uid,
                *self.meta.values()]
        return [c for c in cols if c]


def column_map_from(options: Mapping[str, object]) -> ColumnMap:
    """A :class:`ColumnMap` from a user's ``{role: column}`` mapping (``votes`` may be ``"a,b,c"``)."""
    unknown = sorted(set(options) - set(ROLES))
    if unknown:
        raise ConfigError(f"unknown column role(s) {unknown}; roles are {list(ROLES)}")
    if not options.get("image"):
        raise ConfigError("the column mapping needs an 'image' column")
    votes = options.get("votes") or []
    if isinstance(votes, str):
        votes = [v.strip() for v in votes.split(",") if v.strip()]
    if bool(options.get("x")) != bool(options.get("y")):
        raise ConfigError("map both 'x' and 'y' (figure centre on a larger image) or neither")

    def opt(name: str) -> str | None:
        value = options.get(name)
        return str(value) if value else None

    return ColumnMap(
        image=str(options["image"]), label=opt("label"), votes=[str(v) for v in votes], group=opt("group"),
        x=opt("x"), y=opt("y"), uid=opt("uid"),
        meta={k: str(options[k]) for k in (*DOMAIN_FIELDS, "domain") if options.get(k)},
    )


def label_words(labels: Mapping[str, object] | None) -> dict[str, int]:
    """A user's ``{value: label}`` mapping (label 0/1 or normal/atypical/NMF/AMF), case-insensitive."""
    if not labels:
        return dict(LABEL_WORDS)
    words: dict[str, int] = {}
    for value, target in labels.items():
        label = target if target in (NORMAL, ATYPICAL) else parse_label(str(target))
        if label is None:
            raise ConfigError(f"label mapping {value!r} -> {target!r}: target must be normal/atypical or 0/1")
        words[str(value).strip().lower()] = int(label)
    return words


def _coordinate(value: str) -> int | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return round(number) if number == number and abs(number) != float("inf") else None


def read_mapped(table: Table, log: ProblemLog, cmap: ColumnMap, *, dirs: Sequence[Path], dataset: str,
                words: Mapping[str, int], group_from_image: bool = False) -> list[Entry]:
    """Records from every row of ``table`` under ``cmap``; see :mod:`mitotype.data.readers`."""
    actual = require_columns(table, cmap.columns())  # names as the header spells them
    cmap = ColumnMap(
        image=actual[cmap.image], label=actual[cmap.label] if cmap.label else None,
        votes=[actual[v] for v in cmap.votes], group=actual[cmap.group] if cmap.group else None,
        x=actual[cmap.x] if cmap.x else None, y=actual[cmap.y] if cmap.y else None,
        uid=actual[cmap.uid] if cmap.uid else None, meta={f: actual[c] for f, c in cmap.meta.items()},
    )
    known = sorted(words)
    entries: list[Entry] = []
    crops = cmap.x is not None and cmap.y is not None
    no_group_rows = 0
    for line, row in table.rows:
        name = row[cmap.image]
        if not name:
            log.error(table.path, line, P.BAD_VALUE, f"empty {cmap.image}")
            continue
        votes, bad = parse_votes([row[c] for c in cmap.votes], words)
        if bad is not None:
            col = cmap.votes[bad]
            log.error(table.path, line, P.UNKNOWN_LABEL, f"{col} value {row[col]!r} is not one of {known}")
            continue
        label: int | None = None
        if cmap.label is not None:
            label = parse_label(row[cmap.label], words)
            message = f"{cmap.label} value {row[cmap.label]!r} is not one of {known}"
            if label is None and log.labels_optional:
                log.warn(table.path, line, P.UNKNOWN_LABEL, f"{message}: the figure is kept without a label")
            elif label is None:
                log.error(table.path, line, P.UNKNOWN_LABEL, message)
                continue
            else:
                check_majority(log, table.path, line, label, votes, cmap.label)
        elif cmap.votes:
            label = vote_majority(votes)
            if label is None and not log.labels_optional:
                log.error(table.path, line, P.BAD_VALUE,
                          "votes tie (or none cast) and there is no label column")
                continue
        x = y = None
        if crops:
            x, y = _coordinate(row[cmap.x]), _coordinate(row[cmap.y])  # type: ignore[index]
            if x is None or y is None:
                log.error(table.path, line, P.BAD_VALUE,
                          f"coordinates ({row[cmap.x]!r}, {row[cmap.y]!r}) are not numbers")  # type: ignore[index]
                continue
        meta = {f: row[c] for f, c in cmap.meta.items() if row[c]}
        uid = row[cmap.uid] if cmap.uid and row[cmap.uid] else ""
        uid = uid or (f"{Path(name).stem}@{x},{y}" if crops else name)
        group = row[cmap.group] if cmap.group else ""
        if not group:
            if group_from_image:
                group = name
            else:
                group = uid
                no_group_rows += 1
        record = FigureRecord(uid=uid, image=resolve_image(name, dirs), label=label, group=group,
                              dataset=dataset, votes=votes, domain=default_domain(meta, dataset), x=x, y=y,
                              meta=meta)
        entries.append(Entry(record, str(table.path), line))
    if no_group_rows:
        log.warn(table.path, None, P.NO_GROUPS,
                 f"{no_group_rows} figure(s) have no group (slide/patient) column value: each is its own "
                 "group, so splits cannot keep a slide on one side")
    return unique_uids(log, entries, "figure")
