"""Figures nobody has labelled (issue 37): every reader that ``predict`` accepts reads them without a label,
while ``train``, ``cv`` and ``evaluate`` refuse them in one line."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mitotype.cli.main import main
from mitotype.data.readers import detect_format
from tests.conftest import make_model_dir
from tests.data.datafactories import write_csv, write_png
from tests.wsi_factory import Figure, amibr_patches, background, coords_csv, grid_centres, place, write_pyramid


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.shared
def test_coords_without_labels_on_a_tiled_slide(shared_data: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A CSV of image, x, y on a pyramidal TIFF: one row per point with the p of the same patches given as
    files; evaluate, train and cv refuse it in one line."""
    patches = amibr_patches(shared_data, 12, seed=37)
    centres = grid_centres(1024, 768, len(patches))
    figures = [Figure(p, label, uid, x, y) for (p, label, uid), (x, y) in zip(patches, centres)]
    write_pyramid(tmp_path / "slide.tif", place(background(1024, 768, (0, 0, 1024, 768)), figures), mpp=0.25)
    points = coords_csv(tmp_path / "pts.csv", "slide.tif", centres)
    assert detect_format(points) == "coords"
    folder = tmp_path / "patches"
    folder.mkdir()
    for i, f in enumerate(figures):
        Image.fromarray(f.patch).save(folder / f"f{i:02d}.png")

    assert main(["predict", str(points), "--format", "coords", "--out", str(tmp_path / "coords.csv")]) == 0
    assert main(["predict", str(folder), "--out", str(tmp_path / "patches.csv")]) == 0
    on_slide = _rows(tmp_path / "coords.csv")
    as_files = {r["id"]: float(r["p_atypical"]) for r in _rows(tmp_path / "patches.csv")}
    assert [r["id"] for r in on_slide] == [f"slide@{x},{y}" for x, y in centres]
    assert "label" not in on_slide[0]
    np.testing.assert_allclose([float(r["p_atypical"]) for r in on_slide],
                               [as_files[f"f{i:02d}.png"] for i in range(len(figures))], atol=1e-6)
    capsys.readouterr()

    assert main(["evaluate", "--model", str(make_model_dir(tmp_path / "m")), "--data", str(points),
                 "--out", str(tmp_path / "ev")]) == 2
    line = _one_error_line(capsys)
    assert "pts.csv" in line and "['label']" in line and "predict" in line
    for command in ("train", "cv"):
        assert main([command, "--data", str(points), "--preset", "plain", "--out", str(tmp_path / command)]) == 2
        assert "['label']" in _one_error_line(capsys)
        assert not (tmp_path / command).exists()


def _amibr(root: Path) -> Path:
    for i in range(3):
        write_png(root / "patches" / "normal" / f"MIDOG21_{i}.png", seed=i)
    write_csv(root / "AMI-BR.csv", ["", "slide", "dataset", "uid", "x", "y"],
              [[i, "002.tiff", "MIDOG21", i, 10 * i, 20 * i] for i in range(3)])
    return root


def _midog25(root: Path) -> Path:
    header = ["image_id", "filename", "coordinateX", "coordinateY", "Tumor", "Scanner", "Origin", "Species"]
    for i in range(3):
        write_png(root / "images" / f"{i}.png", seed=i)
    return write_csv(root / "test_set.csv", header,
                     [[f"{i}.png", "001.tiff", 5, 5, "canine lymphoma", "Aperio", "lab", "Canine"] for i in range(3)])


def _votes(root: Path) -> Path:
    for i in range(3):
        write_png(root / f"fig{i}.png", seed=i)
    return write_csv(root / "votes.csv", ["Filename", "Expert_1", "Expert_2", "Expert_3", "Majority"],
                     [[f"fig{i}.png", "", "", "", ""] for i in range(3)])


def _coords(root: Path) -> Path:
    root.mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(root / "big.png")
    return coords_csv(root / "pts.csv", "big.png", [(100, 100), (200, 150), (390, 290)])


def _plain_csv(root: Path) -> Path:
    for i in range(3):
        write_png(root / f"p{i}.png", seed=i)
    return write_csv(root / "list.csv", ["file", "scanner"], [[f"p{i}.png", "A"] for i in range(3)])


def _images(root: Path) -> Path:
    for i in range(3):
        write_png(root / "new" / f"p{i}.png", seed=i)
    return root / "new"


READERS: dict[str, Callable[[Path], Path]] = {
    "amibr": _amibr, "midog25": _midog25, "votes-csv": _votes, "coords": _coords, "csv": _plain_csv,
    "images": _images,
}
"""Every reader ``predict`` accepts, each given three figures without labels. (``folder`` is left out: its class
folders are its labels, and a folder of figures without them is the ``images`` reader's.)"""


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("m") / "model")


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_every_reader_predicts_unlabelled_figures_and_evaluate_refuses_them(
        fmt: str, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = READERS[fmt](tmp_path / "data")
    assert detect_format(data) == fmt
    out = tmp_path / "p.csv"
    assert main(["predict", str(data), "--model", str(model), "--out", str(out), "--device", "cpu"]) == 0
    rows = _rows(out)
    assert len(rows) == 3 and all(r.get("label", "") == "" for r in rows)
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "ev"),
                 "--device", "cpu"]) == 2
    line = _one_error_line(capsys)
    assert "label" in line.lower() or "majority" in line.lower() or "expert" in line.lower(), line
    assert not (tmp_path / "ev" / "results.json").exists()


def test_a_mapped_csv_without_a_label_trains_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The csv reader with a mapping but no label column gives unlabelled figures: train refuses them."""
    data = _plain_csv(tmp_path / "data")
    assert main(["train", "--data", str(data), "--format", "csv", "--column", "image=file", "--preset", "plain",
                 "--out", str(tmp_path / "run")]) == 2
    assert "have no label" in _one_error_line(capsys)
