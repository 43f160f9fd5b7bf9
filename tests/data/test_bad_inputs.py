"""Every kind of bad input under both on_error policies: errors stop (fail) or drop and report (skip);
quirks (warnings) keep the record under both."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from datafactories import midog25_rows, truncate, write_midog25, write_png

from mitotype.data.patches import load_patch
from mitotype.data.readers import read_dataset
from mitotype.errors import DataError

N = 8
TARGET = "3.png"  # on line 4 of the CSV


def dataset(tmp_path: Path) -> Path:
    write_midog25(tmp_path, midog25_rows(N))
    return tmp_path


def edit_csv(root: Path, change: Callable[[list[dict[str, str]]], None]) -> None:
    path = root / "labels.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    change(rows)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def set_value(column: str, value: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        def edit(rows: list[dict[str, str]]) -> None:
            rows[2][column] = value

        edit_csv(root, edit)

    return change


def replace_image(**kwargs) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        write_png(root / "images" / TARGET, seed=77, **kwargs)

    return change


def animate(root: Path) -> None:
    """An animated PNG of 3 frames (a stack of figures) under the patch's name."""
    from PIL import Image

    stripes = (np.arange(128)[:, None, None] % 2 * 7).astype(np.uint8)  # not blank: blank frames are warned of
    frames = [Image.fromarray(np.full((128, 128, 3), 60 * k, np.uint8) + stripes) for k in range(3)]
    frames[0].save(root / "images" / TARGET, save_all=True, append_images=frames[1:])


def corrupt(root: Path) -> None:
    """Garbage in the middle of the compressed pixel data; the file keeps its length and IEND."""
    path = root / "images" / TARGET
    data = bytearray(path.read_bytes())
    data[200:1200] = bytes(range(250)) * 4
    path.write_bytes(bytes(data))


def missing(root: Path) -> None:
    (root / "images" / TARGET).unlink()


def add_to_line(line: int, text: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        path = root / "labels.csv"
        lines = path.read_text().splitlines()
        lines[line - 1] += text
        path.write_text("\n".join(lines) + "\n")

    return change


ERRORS = {
    "missing file": (missing, "missing-file", r"labels.csv, row 4: image file not found: .*3.png"),
    "corrupt png": (corrupt, "corrupt-image",
                    r"3.png: cannot decode image .*\(listed at .*labels.csv, row 4\)"),
    "truncated png": (lambda root: truncate(root / "images" / TARGET), "corrupt-image",
                      r"3.png: truncated PNG \(no IEND chunk\)"),
    "unknown label": (set_value("majority", "Maybe"), "unknown-label",
                      r"labels.csv, row 4: majority value 'Maybe' is not NMF/AMF"),
    "unknown vote": (set_value("expert2", "mitosis?"), "unknown-label",
                     r"labels.csv, row 4: expert2 value 'mitosis\?' is not NMF/AMF"),
    "empty image id": (set_value("image_id", ""), "bad-value", r"labels.csv, row 4: empty image_id"),
    # an unquoted comma inside a value shifts every later column: never read as a shifted row
    "more values than columns": (add_to_line(4, ",breast, carcinoma"), "bad-value",
                                 r"labels.csv, row 4: \d+ values but the header has \d+ columns"),
}

WARNINGS = {
    "grayscale": (replace_image(mode="L"), "converted-mode", "grayscale (L) image converted to RGB"),
    "rgba": (replace_image(mode="RGBA"), "converted-mode", "RGBA image converted to RGB"),
    "palette": (replace_image(mode="P"), "converted-mode", "palette (P) image converted to RGB"),
    "larger patch": (replace_image(size=150), "wrong-size", "patch is 150x150: centre-cropped to 128x128"),
    "smaller patch": (replace_image(size=(96, 128)), "wrong-size",
                      "patch is 96x128: black-padded to 128x128"),
    # only the first frame is read: a stack of figures among patches must not pass as one figure unsaid
    "several frames": (animate, "multi-page", "3 pages or frames: only the first is used as the figure"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_error_fails_with_file_and_row(tmp_path: Path, case: str) -> None:
    mutate, kind, pattern = ERRORS[case]
    root = dataset(tmp_path)
    mutate(root)
    with pytest.raises(DataError, match=pattern) as info:
        read_dataset(root, on_error="fail")
    assert "\n" not in str(info.value) and kind in str(info.value)


@pytest.mark.parametrize("case", list(ERRORS))
def test_error_is_dropped_and_reported_under_skip(tmp_path: Path, case: str) -> None:
    mutate, kind, pattern = ERRORS[case]
    root = dataset(tmp_path)
    mutate(root)
    result = read_dataset(root, on_error="skip")
    assert len(result.records) == N - 1
    assert TARGET not in {r.uid for r in result.records}
    [error] = result.errors
    assert error.kind == kind and error.severity == "error"
    assert re.search(pattern, str(error))
    assert error.row is not None or "row 4" in error.message


@pytest.mark.parametrize("policy", ["fail", "skip"])
@pytest.mark.parametrize("case", list(WARNINGS))
def test_quirk_keeps_the_record_and_is_reported(tmp_path: Path, case: str, policy: str) -> None:
    mutate, kind, message = WARNINGS[case]
    root = dataset(tmp_path)
    mutate(root)
    result = read_dataset(root, on_error=policy)
    assert len(result.records) == N
    [warning] = result.problems
    assert warning.kind == kind and warning.severity == "warning"
    assert message in warning.message and warning.file.endswith(TARGET)
    pixels = load_patch(next(r for r in result.records if r.uid == TARGET))
    assert pixels.shape == (128, 128, 3) and pixels.dtype == np.uint8


def test_header_check_reports_several_frames_too(tmp_path: Path) -> None:
    root = dataset(tmp_path)
    animate(root)
    [warning] = read_dataset(root, check="header").problems
    assert warning.kind == "multi-page" and warning.file.endswith(TARGET)


def test_wrong_size_is_an_error_under_the_reject_policy(tmp_path: Path) -> None:
    root = dataset(tmp_path)
    replace_image(size=150)(root)
    with pytest.raises(DataError, match=r"3\.png: patch is 150x150, expected 128x128"):
        read_dataset(root, size_policy="reject")
    result = read_dataset(root, size_policy="reject", on_error="skip")
    assert len(result.records) == N - 1 and result.errors[0].kind == "wrong-size"
    resized = read_dataset(root, size_policy="resize")
    assert "resized to 128x128" in resized.problems[0].message


@pytest.mark.parametrize("policy", ["fail", "skip"])
def test_missing_columns_always_stop_and_list_them(tmp_path: Path, policy: str) -> None:
    root = dataset(tmp_path)

    def drop(rows: list[dict[str, str]]) -> None:
        for row in rows:
            del row["majority"], row["Tumor"]

    edit_csv(root, drop)
    with pytest.raises(DataError, match=r"labels.csv, row 1: missing column\(s\) \['Tumor', 'majority'\]"):
        read_dataset(root, on_error=policy)  # still detected as midog25: the rest of the schema is there


def test_header_check_is_cheaper_but_still_finds_truncation(tmp_path: Path) -> None:
    root = dataset(tmp_path)
    truncate(root / "images" / TARGET)
    result = read_dataset(root, on_error="skip", check="header")
    assert [p.kind for p in result.errors] == ["corrupt-image"]
    labels_only = read_dataset(root, check="none")
    assert len(labels_only.records) == N and labels_only.problems == []


def test_a_trailing_empty_value_is_not_an_extra_column(tmp_path: Path) -> None:
    root = dataset(tmp_path)
    add_to_line(4, ",")(root)
    result = read_dataset(root, on_error="fail")
    assert len(result.records) == N and not result.problems



@pytest.mark.parametrize("policy", ["fail", "skip"])
@pytest.mark.parametrize(("second", "named"), [
    ("majority", r"column 'majority' occurs twice in the header \(columns 12 and 13\)"),
    (" Majority", r"column 'Majority' occurs twice in the header \(columns 12 and 13, as 'majority' and 'Majority'\)"),
])
def test_a_column_named_twice_stops_and_names_it(tmp_path: Path, policy: str, second: str, named: str) -> None:
    """Rows are keyed by column name: a second 'majority' column (the labels re-done in a spreadsheet)
    would silently replace the first. It is an error naming the file and both columns instead."""
    root = dataset(tmp_path)
    path = root / "labels.csv"
    lines = path.read_text().splitlines()
    flip = {"NMF": "AMF", "AMF": "NMF"}
    path.write_text("\n".join([lines[0] + f",{second}"] + [f"{x},{flip[x.rsplit(',', 1)[1]]}" for x in lines[1:]]))
    with pytest.raises(DataError, match=rf"labels.csv, row 1: {named}; rename or remove one"):
        read_dataset(root, on_error=policy)
