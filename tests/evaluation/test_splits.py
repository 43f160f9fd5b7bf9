"""Splits: no slide on both sides, held-out domains stay out, every record tested exactly once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mitotype.data.records import FigureRecord
from mitotype.errors import ConfigError, DataError
from mitotype.evaluation.splits import (
    Fold,
    assert_no_leak,
    grouped_stratified_kfold,
    leave_one_domain_out,
    validation_split,
)

SEEDS = range(12)


def make_records(seed: int, n: int | None = None) -> list[FigureRecord]:
    """Random slides (each in one domain) with random sizes and labels."""
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(60, 200))
    n_domains = int(rng.integers(2, 5))
    n_groups = int(rng.integers(max(n_domains * 3, 8), 30))
    group_domain = rng.integers(0, n_domains, n_groups)
    group_domain[:n_domains] = np.arange(n_domains)  # every domain has a slide
    groups = rng.integers(0, n_groups, n)
    groups[:n_groups] = np.arange(n_groups)  # every slide has a figure
    labels = (rng.random(n) < rng.uniform(0.1, 0.5)).astype(int)
    return [
        FigureRecord(
            uid=str(i),
            image=Path(f"{i}.png"),
            label=int(labels[i]),
            group=f"slide{groups[i]}",
            dataset="synthetic",
            domain=f"domain{group_domain[groups[i]]}",
        )
        for i in range(n)
    ]


def _groups(records: list[FigureRecord], idx: np.ndarray) -> set[str]:
    return {records[i].group for i in idx}


def _check_partition(records: list[FigureRecord], folds: list[Fold]) -> None:
    tested = np.concatenate([f.test_idx for f in folds])
    assert sorted(tested.tolist()) == list(range(len(records)))  # each record in exactly one test fold
    for f in folds:
        assert not _groups(records, f.train_idx) & _groups(records, f.test_idx)
        assert not set(f.train_idx.tolist()) & set(f.test_idx.tolist())


@pytest.mark.parametrize("seed", SEEDS)
def test_kfold_is_leak_free_and_partitions(seed: int) -> None:
    records = make_records(seed)
    folds = grouped_stratified_kfold(records, k=4, seed=seed)
    assert len(folds) == 4 and [f.name for f in folds] == ["fold0", "fold1", "fold2", "fold3"]
    _check_partition(records, folds)
    for f in folds:
        assert f.held_out_domain is None
        assert len(f.train_idx) + len(f.test_idx) == len(records)
        assert_no_leak(records, f.train_idx, f.test_idx)


@pytest.mark.parametrize("seed", SEEDS)
def test_lodo_keeps_the_held_out_domain_out_of_train_and_validation(seed: int) -> None:
    records = make_records(seed)
    folds = leave_one_domain_out(records)
    assert len(folds) == len({r.domain for r in records})
    _check_partition(records, folds)
    for f in folds:
        assert {records[i].domain for i in f.test_idx} == {f.held_out_domain}
        assert f.held_out_domain not in {records[i].domain for i in f.train_idx}
        tr, va = validation_split(records, f.train_idx, fraction=0.2, seed=seed)
        assert f.held_out_domain not in {records[i].domain for i in np.concatenate([tr, va])}
        assert set(tr.tolist()) | set(va.tolist()) == set(f.train_idx.tolist())
        assert not _groups(records, tr) & _groups(records, va)
        assert not _groups(records, va) & _groups(records, f.test_idx)


@pytest.mark.parametrize("seed", SEEDS)
def test_validation_split_only_uses_given_indices(seed: int) -> None:
    records = make_records(seed)
    rng = np.random.default_rng(seed + 100)
    idx = np.sort(rng.choice(len(records), size=len(records) // 2, replace=False))
    if len(_groups(records, idx)) < 2:
        pytest.skip("drawn subset has a single slide")
    tr, va = validation_split(records, idx, fraction=0.25, seed=seed)
    assert len(va) > 0 and len(tr) > 0
    assert set(tr.tolist()).isdisjoint(va.tolist())
    assert set(tr.tolist()) | set(va.tolist()) == set(idx.tolist())
    assert_no_leak(records, tr, va)


def test_validation_split_size_and_stratification() -> None:
    records = [
        FigureRecord(str(i), Path("x.png"), int(i % 40 < 8), f"s{i // 10}", "d", domain="a")
        for i in range(400)
    ]
    _, va = validation_split(records, np.arange(400), fraction=0.2, seed=0)
    assert 0.15 <= len(va) / 400 <= 0.25
    assert {records[i].label for i in va} == {0, 1}


def test_group_spanning_domains_is_dropped_from_training() -> None:
    records = [
        FigureRecord("a", Path("a.png"), 0, "shared", "d", domain="scanner1"),
        FigureRecord("b", Path("b.png"), 1, "shared", "d", domain="scanner2"),
        FigureRecord("c", Path("c.png"), 0, "other", "d", domain="scanner2"),
    ]
    with pytest.warns(UserWarning, match="share a group"):
        folds = leave_one_domain_out(records)
    first = folds[0]
    assert first.held_out_domain == "scanner1"
    assert first.train_idx.tolist() == [2] and first.dropped_idx.tolist() == [1]
    for f in folds:
        assert_no_leak(records, f.train_idx, f.test_idx)


def test_assert_no_leak_names_the_group() -> None:
    records = make_records(0, n=60)
    with pytest.raises(DataError, match=records[0].group):
        assert_no_leak(records, [0], [0])


def test_split_errors() -> None:
    one_domain = [FigureRecord(str(i), Path("x.png"), i % 2, f"s{i}", "d", domain="a") for i in range(6)]
    with pytest.raises(ConfigError, match="two domains"):
        leave_one_domain_out(one_domain)
    no_domain = [FigureRecord("x", Path("x.png"), 0, "s", "d")]
    with pytest.raises(ConfigError, match="no domain"):
        leave_one_domain_out(no_domain)
    with pytest.raises(ConfigError, match="at least 10 groups"):
        grouped_stratified_kfold(one_domain, k=10)
    single_slide = [FigureRecord(str(i), Path("x.png"), i % 2, "s", "d") for i in range(6)]
    with pytest.raises(ConfigError, match="1 group"):
        validation_split(single_slide, np.arange(6))
    with pytest.raises(ConfigError, match="fraction"):
        validation_split(one_domain, np.arange(6), fraction=1.5)
