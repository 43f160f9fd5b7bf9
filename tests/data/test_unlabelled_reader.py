"""Figures without a label file: the ``images`` reader and labels that are optional for prediction."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mitotype.data.readers import detect_format, read_dataset
from mitotype.data.records import require_labels
from mitotype.errors import DataError


def _png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((128, 128, 3), value, dtype=np.uint8)).save(path)
    return path


def test_folder_at_any_depth_labels_only_from_class_folders(tmp_path: Path) -> None:
    root = tmp_path / "new"
    _png(root / "a.png", 10)
    _png(root / "case 7" / "slide 2" / "b.png", 20)
    _png(root / "batch" / "Atypical" / "c.png", 30)
    _png(root / "old" / "NMF" / "deep" / "d.jpg", 40)
    (root / "notes.txt").write_text("not an image")
    assert detect_format(root) == "images"
    result = read_dataset(root)
    by_uid = {r.uid: r for r in result.records}
    assert set(by_uid) == {"a.png", "case 7/slide 2/b.png", "batch/Atypical/c.png", "old/NMF/deep/d.jpg"}
    assert by_uid["a.png"].label is None and by_uid["case 7/slide 2/b.png"].label is None
    assert by_uid["batch/Atypical/c.png"].label == 1 and by_uid["old/NMF/deep/d.jpg"].label == 0
    with pytest.raises(DataError, match=r"3 of 4 figure\(s\)|have no label"):
        require_labels(result.records, "training")


def test_text_list_of_paths(tmp_path: Path) -> None:
    _png(tmp_path / "imgs" / "x.png")
    _png(tmp_path / "imgs" / "y.png")
    listing = tmp_path / "todo.txt"
    listing.write_text("# figures to classify\nimgs/x.png\n\n" + str(tmp_path / "imgs" / "y.png") + "\n")
    assert detect_format(listing) == "images"
    records = read_dataset(listing).records
    assert [r.image for r in records] == [tmp_path / "imgs" / "x.png", tmp_path / "imgs" / "y.png"]
    assert all(r.label is None for r in records)
    (tmp_path / "gone.txt").write_text("imgs/missing.png\n")
    with pytest.raises(DataError, match=r"missing\.png"):
        read_dataset(tmp_path / "gone.txt")


def test_csv_of_paths_without_labels_and_unknown_labels_when_optional(tmp_path: Path) -> None:
    _png(tmp_path / "p1.png", 1)
    _png(tmp_path / "p2.png", 2)
    table = tmp_path / "figs.csv"
    table.write_text("path,grade\np1.png,AMF\np2.png,mitosis?\n")
    plain = read_dataset(table, fmt="csv", columns={"image": "path"})
    assert [r.label for r in plain.records] == [None, None]
    with pytest.raises(DataError, match="mitosis"):
        read_dataset(table, fmt="csv", columns={"image": "path", "label": "grade"})
    kept = read_dataset(table, fmt="csv", columns={"image": "path", "label": "grade"}, labels_optional=True)
    assert [r.label for r in kept.records] == [1, None]
    [problem] = kept.of_kind("unknown-label")
    assert problem.severity == "warning" and "kept without a label" in problem.message


@pytest.mark.shared
def test_real_amibr_pngs_copied_without_labels(shared_data: Path, tmp_path: Path) -> None:
    src = sorted((shared_data / "amibr" / "patches" / "atypical").glob("*.png"))[:3]
    src += sorted((shared_data / "amibr" / "patches" / "normal").glob("*.png"))[:3]
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in src:
        shutil.copy(f, flat / f.name)
    result = read_dataset(flat)
    assert result.fmt == "images" and len(result.records) == 6
    assert all(r.label is None for r in result.records) and not result.problems


def test_votes_csv_finds_images_in_class_folders_its_names_lack(tmp_path: Path) -> None:
    _png(tmp_path / "Atypical" / "a1.png", 5)
    _png(tmp_path / "Normal" / "n1.png", 6)
    (tmp_path / "votes.csv").write_text(
        "Filename,Expert_1,Expert_2,Expert_3,Majority\na1.png,Atypical,Atypical,Normal,Atypical\n"
        "n1.png,Normal,Normal,Normal,Normal\n")
    result = read_dataset(tmp_path / "votes.csv")
    assert result.fmt == "votes-csv"
    assert {r.uid: r.image for r in result.records} == {"a1.png": tmp_path / "Atypical" / "a1.png",
                                                        "n1.png": tmp_path / "Normal" / "n1.png"}


def test_plain_image_label_csv_is_recognised(tmp_path: Path) -> None:
    _png(tmp_path / "x.png", 7)
    _png(tmp_path / "y.png", 8)
    (tmp_path / "labels.csv").write_text("image,label\nx.png,AMF\ny.png,NMF\n")
    for path in (tmp_path / "labels.csv", tmp_path):
        result = read_dataset(path)
        assert result.fmt == "csv" and [r.label for r in result.records] == [1, 0]


def test_one_patch_file_is_one_figure(tmp_path: Path) -> None:
    patch = _png(tmp_path / "case 3" / "fig.png", 50)
    assert detect_format(patch) == "images"
    records = read_dataset(patch).records
    assert [(r.uid, r.image, r.label) for r in records] == [("fig.png", patch, None)]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg: ") as info:
        read_dataset(tmp_path / "broken.jpg")
    assert "listed at" not in str(info.value)  # the file given is the file at fault: no second location
    assert read_dataset(tmp_path / "broken.jpg", on_error="skip", labels_optional=True).errors
