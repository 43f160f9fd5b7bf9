"""One record per mitotic figure: the common currency of every reader, split, trainer and report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from mitotype.errors import ConfigError

DOMAIN_FIELDS = ("scanner", "tumor", "lab", "species", "source")
"""Metadata fields a reader may fill and a user may combine into the domain."""


@dataclass(frozen=True)
class FigureRecord:
    """A single mitotic figure.

    The pixels come either from a patch file centred on the figure (``x``/``y`` are ``None``) or from
    a larger image with the figure's centre at ``x``/``y`` (a 128x128 crop is taken, black-padded at
    the border as the real challenge data is).
    """

    uid: str
    """Identifier unique within ``dataset`` (e.g. ``MIDOG21_6`` or a row number for duplicates)."""
    image: Path
    """Patch file, or the larger image the figure lies on."""
    label: int | None
    """Hard label: 1 = atypical (AMF), 0 = normal (NMF); ``None`` = unknown (new figures to classify:
    ``predict`` takes them, training and evaluation refuse them, see :func:`require_labels`)."""
    group: str
    """Leak-free split unit (slide or patient): never on both sides of a split."""
    dataset: str
    """Which dataset or reader the figure came from (``amibr``, ``midog25``, ...)."""
    votes: tuple[bool | None, ...] = ()
    """Per-expert atypical votes; ``None`` is a vote not cast (e.g. a tie-breaker not needed)."""
    domain: str = ""
    """Domain for leave-one-domain-out and domain-aware training; see :func:`assign_domains`."""
    x: int | None = None
    """Figure centre (column) on ``image`` when it is a larger image; ``None`` for patch files."""
    y: int | None = None
    """Figure centre (row) on ``image`` when it is a larger image; ``None`` for patch files."""
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    """Raw fields the domain may be built from (``scanner``, ``tumor``, ``lab``, ``species``,
    ``source``) and anything else worth keeping (e.g. ``benchmark_split``, ``subtype``)."""

    @property
    def votes_cast(self) -> int:
        return sum(v is not None for v in self.votes)

    @property
    def atypical_votes(self) -> int:
        return sum(v is True for v in self.votes)

    @property
    def soft_label(self) -> float:
        """Atypical votes / votes cast; the hard label when no vote is known (NaN when neither is)."""
        cast = self.votes_cast
        if cast:
            return self.atypical_votes / cast
        return float("nan") if self.label is None else float(self.label)

    @property
    def is_crop(self) -> bool:
        return self.x is not None and self.y is not None


def require_labels(records: Sequence[FigureRecord], purpose: str) -> None:
    """Raise :class:`~mitotype.errors.DataError` when any record has no label (``purpose``: e.g. "training")."""
    from mitotype.errors import DataError

    missing = [r for r in records if r.label is None]
    if missing:
        raise DataError(f"{len(missing)} of {len(records)} figure(s) have no label (first: {missing[0].uid}); "
                        f"{purpose} needs a label for every figure (unlabelled figures can only be predicted)")


def namespaced(records: Sequence[FigureRecord], name: str) -> list[FigureRecord]:
    """The records of one dataset among several: ``dataset`` = ``name``, and ``uid``, ``group`` and ``domain``
    prefixed by ``name:`` (``amibr:Aperio CS2``), so two datasets never share a figure id, a slide or a
    domain, whatever their readers called them."""
    return [replace(r, dataset=name, uid=f"{name}:{r.uid}", group=f"{name}:{r.group}",
                    domain=f"{name}:{r.domain}" if r.domain else name) for r in records]


def domain_of(record: FigureRecord, fields: Sequence[str]) -> str:
    """The domain name a record gets from the given metadata fields, joined by ``" / "``."""
    parts = []
    for name in fields:
        value = record.meta.get(name, "")
        parts.append(value if value else f"unknown {name}")
    return " / ".join(parts)


def available_domain_fields(records: Iterable[FigureRecord]) -> list[str]:
    """Domain fields that at least one record carries."""
    present: set[str] = set()
    for r in records:
        present.update(k for k in DOMAIN_FIELDS if r.meta.get(k))
    return [k for k in DOMAIN_FIELDS if k in present]


def assign_domains(records: Sequence[FigureRecord], fields: Sequence[str]) -> list[FigureRecord]:
    """Records with ``domain`` rebuilt from ``fields`` (e.g. ``["scanner"]`` or ``["tumor", "species"]``).

    Raises :class:`~mitotype.errors.ConfigError` when a field is not a known domain field or no record
    carries it.
    """
    fields = list(fields)
    unknown = [f for f in fields if f not in DOMAIN_FIELDS]
    if unknown:
        raise ConfigError(f"unknown domain field(s) {unknown}; choose from {list(DOMAIN_FIELDS)}")
    have = available_domain_fields(records)
    missing = [f for f in fields if f not in have]
    if missing:
        raise ConfigError(f"domain field(s) {missing} not present in this dataset; available: {have}")
    return [replace(r, domain=domain_of(r, fields)) for r in records]
