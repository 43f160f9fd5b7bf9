"""Leak-free splits of figure records: a group (slide or patient) is never on both sides.

Figures from one slide share staining, scanner and tissue; letting a slide into both training and
test data inflates every metric. All splits here work on record indices and are built on
scikit-learn's group-aware splitters.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from mitotype.data.records import FigureRecord, require_labels
from mitotype.errors import ConfigError, DataError

__all__ = [
    "Fold",
    "assert_no_leak",
    "grouped_stratified_kfold",
    "leave_one_domain_out",
    "validation_split",
]


@dataclass(frozen=True)
class Fold:
    """One train/test split as indices into the record list."""

    name: str
    """``"lodo-<domain>"`` or ``"fold<k>"``; used in file names and reports."""
    train_idx: np.ndarray
    test_idx: np.ndarray
    held_out_domain: str | None = None
    """The test domain for leave-one-domain-out folds, ``None`` for k-fold."""
    dropped_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Records left out of training because their group also lies in the held-out domain."""


def _labels(records: Sequence[FigureRecord]) -> np.ndarray:
    require_labels(records, "a stratified split")
    return np.fromiter((r.label for r in records), dtype=np.int64, count=len(records))


def _groups(records: Sequence[FigureRecord]) -> np.ndarray:
    return np.asarray([r.group for r in records], dtype=object)


def _as_idx(idx: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(idx, dtype=np.int64).reshape(-1)


def assert_no_leak(
    records: Sequence[FigureRecord], a_idx: Sequence[int] | np.ndarray, b_idx: Sequence[int] | np.ndarray
) -> None:
    """Raise :class:`~mitotype.errors.DataError` if any group has records in both index sets."""
    groups = _groups(records)
    shared = set(groups[_as_idx(a_idx)].tolist()) & set(groups[_as_idx(b_idx)].tolist())
    if shared:
        names = sorted(map(str, shared))
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        raise DataError(
            f"split leaks {len(names)} group(s) (slides) across both sides: {', '.join(names[:5])}{more}"
        )


def leave_one_domain_out(records: Sequence[FigureRecord]) -> list[Fold]:
    """One fold per domain: test on that domain, train on all others (domains in sorted order).

    Every record is in exactly one test fold. A group that spans domains (rare: one slide rescanned
    on two scanners) would leak, so its records outside the held-out domain are dropped from that
    fold's training set (``Fold.dropped_idx``, with a warning). Raises
    :class:`~mitotype.errors.ConfigError` when a record has no domain or fewer than two domains exist.
    """
    if not records:
        raise ConfigError("no records to split")
    missing = [r.uid for r in records if not r.domain]
    if missing:
        raise ConfigError(
            f"{len(missing)} record(s) have no domain (first: {missing[0]}); "
            "assign domains (e.g. --domain scanner) before leave-one-domain-out"
        )
    domains = np.asarray([r.domain for r in records], dtype=object)
    names = sorted(set(domains.tolist()))
    if len(names) < 2:
        raise ConfigError(f"leave-one-domain-out needs at least two domains, found only {names}")
    groups = _groups(records)
    folds = []
    for name in names:
        test = np.flatnonzero(domains == name)
        rest = np.flatnonzero(domains != name)
        leaking = np.isin(groups[rest], np.unique(groups[test]))
        if leaking.any():
            warnings.warn(
                f"leave-one-domain-out fold {name!r}: {int(leaking.sum())} training record(s) share a "
                "group with the held-out domain and are left out of training",
                stacklevel=2,
            )
        folds.append(
            Fold(
                name=f"lodo-{name}",
                train_idx=rest[~leaking],
                test_idx=test,
                held_out_domain=name,
                dropped_idx=rest[leaking],
            )
        )
    return folds


def grouped_stratified_kfold(records: Sequence[FigureRecord], k: int = 5, seed: int = 0) -> list[Fold]:
    """k folds by group (slide), stratified on the label as far as groups allow.

    Uses :class:`sklearn.model_selection.StratifiedGroupKFold` with shuffling; every record is in
    exactly one test fold. Raises :class:`~mitotype.errors.ConfigError` when ``k < 2`` or there are
    fewer groups than folds.
    """
    if k < 2:
        raise ConfigError(f"k-fold needs k >= 2, got {k}")
    groups = _groups(records)
    n_groups = len(set(groups.tolist()))
    if n_groups < k:
        raise ConfigError(f"{k}-fold split needs at least {k} groups (slides), found {n_groups}")
    y = _labels(records)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "The least populated class has only n members": expected with few atypical slides.
        warnings.simplefilter("ignore", UserWarning)
        splits = list(splitter.split(np.zeros(len(records)), y, groups.astype(str)))
    return [
        Fold(name=f"fold{i}", train_idx=np.sort(tr), test_idx=np.sort(te))
        for i, (tr, te) in enumerate(splits)
    ]


def validation_split(
    records: Sequence[FigureRecord],
    idx: Sequence[int] | np.ndarray,
    fraction: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split the training indices ``idx`` into (train, validation) by group, stratified on the label.

    Only indices from ``idx`` are used, so a held-out test domain can never reach validation. The
    validation part is one fold of a ``StratifiedGroupKFold`` with ``round(1 / fraction)`` folds
    (capped by the number of groups), so its size is about ``fraction`` of ``idx``, rounded to whole
    groups. Raises :class:`~mitotype.errors.ConfigError` for a fraction outside (0, 1) or fewer than
    two groups.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation fraction must be in (0, 1), got {fraction}")
    idx = np.unique(_as_idx(idx))
    if idx.size and (idx.min() < 0 or idx.max() >= len(records)):
        raise ConfigError(f"indices out of range for {len(records)} records")
    groups = _groups(records)[idx].astype(str)
    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        raise ConfigError(
            f"cannot split a validation set by group: the training part has {n_groups} group(s) (slides)"
        )
    n_splits = min(max(2, round(1.0 / fraction)), n_groups)
    y = _labels(records)[idx]
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        train_pos, val_pos = next(iter(splitter.split(np.zeros(idx.size), y, groups)))
    return np.sort(idx[train_pos]), np.sort(idx[val_pos])
