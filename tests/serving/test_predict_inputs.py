"""``mitotype predict`` on what a new user has: figures without labels, in any layout a reader knows."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mitotype.cli.main import main
from tests.conftest import make_model_dir


def _pngs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / ("sub" if i % 2 else ".") / f"fig{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("m") / "model", threshold=0.5)


def test_unlabelled_folder_with_report(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _pngs(tmp_path / "new", 7)
    out = tmp_path / "p.csv"
    assert main(["predict", str(tmp_path / "new"), "--model", str(model), "--out", str(out), "--report",
                 "--device", "cpu"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert sorted(r["id"] for r in rows) == sorted(["fig0.png", "sub/fig1.png", "fig2.png", "sub/fig3.png",
                                                    "fig4.png", "sub/fig5.png", "fig6.png"])
    assert set(rows[0]) == {"id", "p_atypical", "class", "threshold"}  # no label column without labels
    for r in rows:
        assert r["class"] == ("atypical" if float(r["p_atypical"]) >= float(r["threshold"]) else "normal")
    page = (tmp_path / "p.html").read_text()
    payload = json.loads(re.search(r'id="gallery-data">(.*?)</script>', page, re.S).group(1))
    assert sorted(row["id"] for row in payload["rows"]) == sorted(r["id"] for r in rows)
    assert "gallery: " in capsys.readouterr().out


def test_csv_of_paths_keeps_labels_where_present(model: Path, tmp_path: Path) -> None:
    paths = _pngs(tmp_path / "imgs", 3)
    table = tmp_path / "list.csv"
    with table.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "grade"])
        w.writerows([[paths[0].name, "AMF"], [f"sub/{paths[1].name}", "unsure"], [paths[2].name, "NMF"]])
    out = tmp_path / "p.json"
    assert main(["predict", str(table), "--format", "csv", "--column", "image=file", "--column", "label=grade",
                 "--images-dir", str(tmp_path / "imgs"), "--model", str(model), "--out", str(out),
                 "--device", "cpu"]) == 0
    rows = json.loads(out.read_text())
    assert [r["label"] for r in rows] == ["atypical", "", "normal"]  # an unknown label blocks nothing


@pytest.mark.shared
def test_real_amibr_pngs_without_labels(model: Path, shared_data: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted((shared_data / "amibr" / "patches" / "normal").glob("*.png"))[:5]:
        shutil.copy(f, flat / f.name)
    out = tmp_path / "p.csv"
    assert main(["predict", str(flat), "--model", str(model), "--out", str(out), "--device", "cpu"]) == 0
    assert len(list(csv.DictReader(out.open()))) == 5


def test_evaluate_writes_the_gallery(model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "labelled"
    for i, cls in enumerate(["normal", "atypical"] * 4):
        _pngs(folder / cls, 1, seed=i)[0].rename(folder / cls / f"f{i}.png")
    out = tmp_path / "ev"
    assert main(["evaluate", "--model", str(model), "--data", str(folder), "--out", str(out),
                 "--device", "cpu"]) == 0
    page = (out / "gallery.html").read_text()
    payload = json.loads(re.search(r'id="gallery-data">(.*?)</script>', page, re.S).group(1))
    assert len(payload["rows"]) == 8 and {r["y"] for r in payload["rows"]} == {0, 1}
    kinds = [s["kind"] for s in payload["sections"]]
    assert kinds[0] == "errors" and kinds[-2:] == ["near", "all"]
