"""votes-csv, folder, csv and coords readers on tiny generated data, and format detection."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile
from datafactories import patch_array, votes_dataset, write_csv, write_png
from PIL import Image

from mitotype.data.patches import crop_centered, load_patch
from mitotype.data.readers import FORMATS, detect_format, read_dataset
from mitotype.errors import ConfigError, DataError


def test_votes_csv(tmp_path: Path) -> None:
    csv_path = votes_dataset(tmp_path)
    assert detect_format(tmp_path) == "votes-csv" and detect_format(csv_path) == "votes-csv"
    result = read_dataset(tmp_path)
    assert result.fmt == "votes-csv" and result.problems == []
    records = {r.uid: r for r in result.records}
    assert [records[f"fig{i}.png"].label for i in range(6)] == [0, 1, 0, 1, 0, 1]
    assert records["fig2.png"].votes == (False, True, False)
    assert records["fig1.png"].votes == (True, True, None) and records["fig1.png"].soft_label == 1.0
    assert records["fig3.png"].group == "case1"
    assert Counter(r.domain for r in result.records) == {"Scanner A": 3, "Scanner B": 3}
    assert result.records[0].dataset == "votes"


def test_votes_csv_images_dir_and_no_group_column(tmp_path: Path) -> None:
    rows = [["a.png", "Atypical", "Atypical", "Atypical"], ["b.png", "Normal", "Atypical", "Normal"]]
    write_csv(tmp_path / "labels" / "v.csv", ["filename", "expert 1", "expert 2", "majority"], rows)
    for i, name in enumerate(["a.png", "b.png"]):
        write_png(tmp_path / "pix" / name, seed=i)
    result = read_dataset(tmp_path / "labels" / "v.csv", images_dir=tmp_path / "pix")
    assert [r.label for r in result.records] == [1, 0]
    assert [r.group for r in result.records] == ["a.png", "b.png"]
    assert Counter((p.kind, p.severity) for p in result.problems) == {
        ("no-groups", "warning"): 1, ("majority-disagrees", "warning"): 1}
    [tie] = result.of_kind("majority-disagrees")
    assert tie.row == 3 and "give a tie; the label follows majority (NMF)" in tie.message
    assert result.records[1].votes == (False, True)


def test_folder_with_metadata(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for i in range(3):
        write_png(root / "NMF" / f"n{i}.png", seed=i)
    write_png(root / "atypical" / "sub" / "a0.png", seed=10)
    (root / "atypical" / "notes.txt").write_text("not an image")
    write_csv(root / "meta.csv", ["file", "slide", "tumor"],
              [["n0.png", "s1", "lymphoma"], ["NMF/n1.png", "s1", "lymphoma"], ["a0.png", "s2", "melanoma"],
               ["gone.png", "s3", "melanoma"]])
    assert detect_format(root) == "folder"
    result = read_dataset(root)
    by_uid = {r.uid: r for r in result.records}
    assert set(by_uid) == {"NMF/n0.png", "NMF/n1.png", "NMF/n2.png", "atypical/sub/a0.png"}
    assert by_uid["atypical/sub/a0.png"].label == 1 and by_uid["NMF/n0.png"].label == 0
    assert by_uid["NMF/n1.png"].group == "s1" and by_uid["atypical/sub/a0.png"].domain == "melanoma"
    kinds = Counter(p.kind for p in result.problems)
    assert kinds == {"ignored-file": 1, "unlisted-image": 1, "unmatched-row": 1, "no-groups": 1}
    assert all(p.severity == "warning" for p in result.problems)


def test_folder_custom_class_names(tmp_path: Path) -> None:
    write_png(tmp_path / "typical" / "x.png", seed=1)
    write_png(tmp_path / "weird" / "y.png", seed=2)
    result = read_dataset(tmp_path, fmt="folder", class_dirs=("typical", "weird"))
    assert {r.uid: r.label for r in result.records} == {"typical/x.png": 0, "weird/y.png": 1}
    assert result.records[0].domain == tmp_path.name
    with pytest.raises(DataError, match="no class folders"):
        read_dataset(tmp_path, fmt="folder")


def test_generic_csv_with_mapping(tmp_path: Path) -> None:
    for i in range(4):
        write_png(tmp_path / "img" / f"p{i}.png", seed=i)
    write_csv(tmp_path / "any.csv", ["File", "Class", "R1", "R2", "R3", "Patient", "Lab"],
              [["p0.png", "mitosis", "mitosis", "mitosis", "", "pt1", "L1"],
               ["p1.png", "abnormal", "abnormal", "mitosis", "abnormal", "pt1", "L1"],
               ["p2.png", "mitosis", "abnormal", "abnormal", "mitosis", "pt2", "L2"],
               ["p3.png", "", "abnormal", "abnormal", "", "pt2", "L2"]])
    # File + Class are read as a plain image, label CSV without a mapping; its values still need one.
    with pytest.raises(DataError, match="Class value 'mitosis'"):
        read_dataset(tmp_path / "any.csv", fmt="csv")
    write_csv(tmp_path / "other.csv", ["Picture", "Grade"], [["p0.png", "mitosis"]])
    with pytest.raises(ConfigError, match="columns"):
        read_dataset(tmp_path / "other.csv", fmt="csv")
    columns = {"image": "file", "votes": "R1,r2,R3", "group": "Patient", "lab": "Lab"}  # any case
    labels = {"mitosis": "normal", "abnormal": "atypical"}
    result = read_dataset(tmp_path / "any.csv", fmt="csv", columns=columns, labels=labels,
                          images_dir=tmp_path / "img")
    assert [r.label for r in result.records] == [0, 1, 1, 1]  # label = vote majority
    assert [r.domain for r in result.records] == ["L1", "L1", "L2", "L2"]
    with_label = read_dataset(tmp_path / "any.csv", fmt="csv", columns={**columns, "label": "Class"},
                              labels=labels, images_dir=tmp_path / "img", on_error="skip")
    assert [r.uid for r in with_label.records] == ["p0.png", "p1.png", "p2.png"]
    [error] = with_label.errors
    assert error.kind == "unknown-label" and error.row == 5
    assert [p.row for p in with_label.of_kind("majority-disagrees")] == [4]
    assert with_label.records[2].label == 0  # follows the label column
    with pytest.raises(ConfigError, match="unknown column role"):
        read_dataset(tmp_path / "any.csv", fmt="csv",
                     columns={"image": "File", "label": "Class", "kind": "x"})


def test_generic_csv_reports_a_row_with_more_values_than_columns(tmp_path: Path) -> None:
    for i in range(3):
        write_png(tmp_path / f"p{i}.png", seed=i)
    (tmp_path / "any.csv").write_text("File,Class,Lab\np0.png,abnormal,L1\np1.png,mitosis,Lab, Berlin\n"
                                      "p2.png,mitosis,L2\n")
    columns, labels = {"image": "File", "label": "Class", "lab": "Lab"}, {"mitosis": "normal", "abnormal": "atypical"}
    with pytest.raises(DataError, match=r"any.csv, row 3: 4 values but the header has 3 columns"):
        read_dataset(tmp_path / "any.csv", fmt="csv", columns=columns, labels=labels)
    result = read_dataset(tmp_path / "any.csv", fmt="csv", columns=columns, labels=labels, on_error="skip")
    assert [r.uid for r in result.records] == ["p0.png", "p2.png"]
    [error] = result.errors
    assert error.kind == "bad-value" and error.row == 3


def test_coords_crops_with_black_padding(tmp_path: Path) -> None:
    big = patch_array(5, 400)[:300]
    Image.fromarray(big).save(tmp_path / "slideA.png")
    tifffile.imwrite(tmp_path / "slideB.tiff", big, photometric="rgb")
    write_csv(tmp_path / "figures.csv", ["image", "x", "y", "label", "tumor"],
              [["slideA.png", 200, 150, "normal", "t1"], ["slideA.png", 5, 295, "atypical", "t1"],
               ["slideB.tiff", 200.0, 150.0, "AMF", "t2"], ["slideB.tiff", 500, 10, "normal", "t2"]])
    assert detect_format(tmp_path) == "coords"
    with pytest.raises(DataError, match=r"figures.csv, row 5: figure centre \(500, 10\) lies outside"):
        read_dataset(tmp_path)
    result = read_dataset(tmp_path, on_error="skip")
    assert [r.uid for r in result.records] == ["slideA@200,150", "slideA@5,295", "slideB@200,150"]
    assert [r.group for r in result.records] == ["slideA.png", "slideA.png", "slideB.tiff"]
    assert [e.kind for e in result.errors] == ["outside-image"]
    crop = load_patch(result.records[1])
    assert np.array_equal(crop, crop_centered(big, 5, 295))
    assert crop[:, :59].max() == 0 and crop[69:].max() == 0
    # the same pixels (PNG and TIFF) at the same place with different labels: a conflicting duplicate
    [conflict] = result.of_kind("conflicting-duplicate")
    assert "slideA@200,150 (NMF" in conflict.message and "slideB@200,150 (AMF" in conflict.message


def test_identical_patches_with_conflicting_labels(tmp_path: Path) -> None:
    csv_path = votes_dataset(tmp_path)
    shutil.copy(tmp_path / "fig0.png", tmp_path / "fig1.png")  # fig1 is atypical, fig0 normal
    Image.open(tmp_path / "fig0.png").save(tmp_path / "fig4.png", compress_level=9)  # re-encoded copy
    result = read_dataset(csv_path)
    [conflict] = result.of_kind("conflicting-duplicate")
    assert {"fig0.png", "fig1.png", "fig4.png"} <= set(conflict.message.replace("(", " ").split())
    assert conflict.severity == "warning" and len(result.records) == 6
    header = read_dataset(csv_path, check="header")  # bytes only: the re-encoded copy is not found
    [conflict] = header.of_kind("conflicting-duplicate")
    assert "fig4.png" not in conflict.message


def test_detection_errors_and_options(tmp_path: Path) -> None:
    assert set(FORMATS) == {"amibr", "midog25", "votes-csv", "folder", "images", "csv", "coords"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no images in .*empty \(the folder is empty\)"):
        read_dataset(tmp_path / "empty")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("figures to come")
    with pytest.raises(DataError, match=r"no images in .*notes \(no image file at any depth; found \['readme.txt'\]"):
        read_dataset(tmp_path / "notes")
    with pytest.raises(DataError, match="no such file"):
        read_dataset(tmp_path / "nowhere")
    csv_path = votes_dataset(tmp_path / "v")
    with pytest.raises(ConfigError, match="unknown option"):
        read_dataset(csv_path, class_dirs=("a", "b"))
    with pytest.raises(ConfigError, match="unknown format"):
        read_dataset(csv_path, fmt="parquet")
    with pytest.raises(ConfigError, match="not present in this dataset"):
        read_dataset(csv_path, domain=["tumor"])


@pytest.mark.parametrize(("encode", "expected"), [
    (lambda text: text.replace("Expert_1", "Expért_1").encode("latin-1"), "not UTF-8"),
    (lambda text: text.encode("utf-16"), "UTF-16"),
    (lambda text: text.replace(",", ";").encode(), "separated by semicolons"),
    (lambda text: text.replace(",", "\t").encode(), "separated by tabs"),
])
def test_a_label_file_no_reader_can_open_says_why(tmp_path: Path, encode, expected: str) -> None:
    """Auto-detection on a re-saved label file (spreadsheet export: Latin-1, UTF-16, semicolons) names the
    file and the cause instead of only 'cannot tell the dataset format'."""
    csv_path = votes_dataset(tmp_path / "v")
    csv_path.write_bytes(encode(csv_path.read_text()))
    for target in (csv_path, csv_path.parent):  # the file itself, or its folder
        with pytest.raises(DataError, match=f"votes.csv: .*{expected}"):
            read_dataset(target)
    assert read_dataset(votes_dataset(tmp_path / "ok")).records  # a clean file still reads


def test_a_class_folder_under_another_name_is_reported_and_can_be_named(tmp_path: Path) -> None:
    """Atypical_figures/ beside normal/ would vanish without a word: a warning says so, and --label names it."""
    root = tmp_path / "ds"
    write_png(root / "normal" / "n0.png", seed=0)
    write_png(root / "Atypical_figures" / "a0.png", seed=1)
    write_png(root / "Atypical_figures" / "deep" / "a1.png", seed=2)
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("no images here")
    result = read_dataset(root)
    assert [r.label for r in result.records] == [0]
    [ignored] = result.of_kind("ignored-folder")
    assert ignored.severity == "warning" and ignored.file.endswith("Atypical_figures")
    assert "2 image(s)" in ignored.message and "--label FOLDER=atypical" in ignored.message
    named = read_dataset(root, labels={"Atypical_figures": "atypical"})
    assert sorted(r.label for r in named.records) == [0, 1, 1] and not named.of_kind("ignored-folder")
