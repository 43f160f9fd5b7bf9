"""The AMi-Br reader on the real data in ../shared (skipped when absent unless CI=true)."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pytest

from mitotype.data.readers import detect_format, read_dataset
from mitotype.data.readers.amibr import midog21_scanner

pytestmark = pytest.mark.shared

DOMAINS = {"Hamamatsu XR": 451, "Hamamatsu S360": 582, "Aperio CS2": 688, "TUPAC16": 1999}


def test_counts_domains_and_votes(amibr) -> None:
    records = amibr.records
    assert amibr.fmt == "amibr" and amibr.problems == []
    assert Counter(r.label for r in records) == {0: 2888, 1: 832}
    assert Counter(r.domain for r in records) == DOMAINS
    assert Counter(r.atypical_votes for r in records) == {0: 2496, 1: 392, 2: 420, 3: 412}
    assert all(r.votes_cast == 3 for r in records)
    assert len({r.uid for r in records}) == 3720


def test_soft_labels_groups_and_meta(amibr) -> None:
    by_uid = {r.uid: r for r in amibr.records}
    first = by_uid["MIDOG21_6"]
    assert first.label == 0 and first.soft_label == 0.0 and first.group == "MIDOG21:002.tiff"
    assert first.meta["scanner"] == "Hamamatsu XR" and first.meta["source"] == "MIDOG21"
    assert first.x is None and first.meta["slide_x"] == "4422"
    assert first.image.name == "MIDOG21_6.png" and first.image.parent.name == "normal"
    assert by_uid["MIDOG21_7"].soft_label == 1.0 and by_uid["MIDOG21_7"].image.parent.name == "atypical"
    soft = Counter(round(r.soft_label, 3) for r in amibr.records)
    assert soft == {0.0: 2496, 0.333: 392, 0.667: 420, 1.0: 412}
    assert all((r.soft_label > 0.5) == (r.label == 1) for r in amibr.records)
    assert Counter(r.meta["benchmark_split"] for r in amibr.records) == {"train": 2894, "test": 826}
    tupac = [r for r in amibr.records if r.meta["source"] == "TUPAC16"]
    assert all("scanner" not in r.meta and r.group.startswith("TUPAC16:") for r in tupac)
    test_groups = {r.group for r in amibr.records if r.meta["benchmark_split"] == "test"}
    train_groups = {r.group for r in amibr.records if r.meta["benchmark_split"] == "train"}
    assert not test_groups & train_groups


def test_scanner_rule_matches_labels_csv(shared_data: Path) -> None:
    with open(shared_data / "amibr" / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == "MIDOG21"]
    assert rows and all(midog21_scanner(r["slide"]) == r["scanner"] for r in rows)
    assert midog21_scanner("160.tiff") == "Leica GT450" and midog21_scanner("999.tiff") is None


def test_without_labels_csv_scanners_are_derived(shared_data: Path, tmp_path: Path) -> None:
    shutil.copy(shared_data / "amibr" / "AMI-BR.csv", tmp_path / "AMI-BR.csv")  # the CSV only, in tmp
    result = read_dataset(tmp_path, images_dir=shared_data / "amibr" / "patches", check="exists")
    assert Counter(r.domain for r in result.records) == DOMAINS
    assert "benchmark_split" not in result.records[0].meta


def test_domain_fields_and_detection(shared_data: Path, amibr) -> None:
    path = shared_data / "amibr"
    assert detect_format(path) == "amibr"
    assert detect_format(path / "labels.csv") == "amibr"
    by_source = read_dataset(path, domain=["source"], check="none")
    assert Counter(r.domain for r in by_source.records) == {"MIDOG21": 1721, "TUPAC16": 1999}
    by_scanner = read_dataset(path, domain="scanner", check="none")
    assert Counter(r.domain for r in by_scanner.records)["unknown scanner"] == 1999
