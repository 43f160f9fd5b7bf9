"""The MIDOG25 reader: the real label file (labels only) and generated folders of PNGs."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from datafactories import midog25_rows, write_midog25, write_png

from mitotype.data.readers import read_dataset
from mitotype.errors import DataError

REAL_CSV = "midog25/MIDOG25_Atypical_Classification_Train_Set.csv"


def real_rows(shared_data: Path) -> list[dict[str, str]]:
    with open(shared_data / REAL_CSV, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.shared
def test_real_label_file_counts_and_quirks(shared_data: Path) -> None:
    result = read_dataset(shared_data / REAL_CSV, check="none")
    records = result.records
    assert result.fmt == "midog25" and len(records) == 11939
    assert Counter(r.label for r in records) == {0: 10191, 1: 1748}
    assert len({r.domain for r in records}) == 7
    assert len({r.meta["scanner"] for r in records}) == 4 and len({r.meta["lab"] for r in records}) == 4
    assert len({r.meta["species"] for r in records}) == 2
    assert len({r.uid for r in records}) == 11939
    dup = [r for r in records if r.meta["image_id"] == "8925.png"]
    assert sorted(r.uid for r in dup) == [f"8925.png#row{n}" for n in (8926, 8927, 8928, 8929)]
    [dup_warning] = result.of_kind("duplicate-id")
    assert "8925.png occurs 4 times" in dup_warning.message
    assert "2 distinct coordinates" in dup_warning.message
    disagree = result.of_kind("majority-disagrees")
    assert len(disagree) == 49 and all(p.severity == "warning" for p in disagree)
    by_line = {p.row: p for p in disagree}
    assert "label follows majority (AMF)" in by_line[10092].message
    assert "label follows majority (NMF)" in by_line[10122].message
    assert all(r.votes_cast in (2, 3) for r in records)
    assert result.errors == []


@pytest.mark.shared
def test_real_label_file_with_a_folder_of_50_images(shared_data: Path, tmp_path: Path) -> None:
    rows = real_rows(shared_data)
    wanted = [r["image_id"] for r in rows[:46]] + ["8925.png", "10091.png", "10121.png", "10272.png"]
    for i, name in enumerate(wanted):
        write_png(tmp_path / "images" / name, seed=i)
    result = read_dataset(shared_data / REAL_CSV, on_error="skip", images_dir=tmp_path / "images")
    assert len({r.image.name for r in result.records}) == 50
    assert len(result.records) == 53  # 8925.png carries 4 rows
    missing = result.of_kind("missing-file")
    assert len(missing) == 11939 - 53 and all(p.file.endswith(".csv") and p.row for p in missing)
    with pytest.raises(DataError, match=r"row 48: image file not found: .*/images/47.png"):
        read_dataset(shared_data / REAL_CSV, images_dir=tmp_path / "images")


def test_sample_folder_with_quirks(tmp_path: Path) -> None:
    rows = midog25_rows(48)
    rows[5]["majority"] = "AMF"  # votes NMF, NMF: a majority that disagrees with the votes
    rows[9].update(expert1="AMF", expert2="NMF", expert3="AMF", majority="AMF")
    rows[10].update(expert1="AMF", expert2="NMF", expert3="AMF", majority="NMF")
    for _ in range(2):
        rows.append(dict(rows[20], coordinateX="999"))  # the 8925.png kind of duplicate id
    write_midog25(tmp_path, rows)
    result = read_dataset(tmp_path)
    assert result.fmt == "midog25" and len(result.records) == 50
    assert len({r.uid for r in result.records}) == 50
    assert sorted(p.row for p in result.of_kind("majority-disagrees")) == [7, 12]
    [dup] = result.of_kind("duplicate-id")
    assert dup.row == 22 and "occurs 3 times" in dup.message
    by_uid = {r.uid: r for r in result.records}
    assert by_uid["6.png"].label == 1 and by_uid["11.png"].label == 0  # the label follows `majority`
    assert by_uid["10.png"].votes == (True, False, True)
    assert by_uid["10.png"].soft_label == pytest.approx(2 / 3)
    assert by_uid["1.png"].votes == (False, False, None) and by_uid["1.png"].votes_cast == 2
    tumors = {"human breast cancer", "canine lymphoma", "canine lung cancer"}
    assert {r.domain for r in result.records} == tumors
    assert by_uid["1.png"].group == "101.tiff" and by_uid["1.png"].meta["lab"] == "UMC Utrecht"
    # identical rows share one image file: a duplicate id, not an identical-image conflict
    assert not result.of_kind("conflicting-duplicate")
    by_species = read_dataset(tmp_path, domain=["species", "tumor"], check="none")
    assert "Human / human breast cancer" in {r.domain for r in by_species.records}


def test_images_beside_the_csv(tmp_path: Path) -> None:
    rows = midog25_rows(3)
    write_midog25(tmp_path, rows, images=False)
    for i, row in enumerate(rows):
        write_png(tmp_path / row["image_id"], seed=i)
    result = read_dataset(tmp_path / "labels.csv")
    assert [r.image.parent for r in result.records] == [tmp_path] * 3
