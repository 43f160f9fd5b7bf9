"""Cohorts through ``mitotype slides``: every bad input is one line and the rest of the cohort is done;
results are reused only for the same inputs; job-array shards split a cohort and a plain run merges them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mitotype.cli.main import main
from mitotype.slides import SlideOptions, analyse_slides
from tests.wsi_factory import background, track1_json, write_pyramid

pytest.importorskip("openslide", reason="OpenSlide not installed (pip install 'mitotype[wsi]')")

MPP = 0.25
SIZE = 640


def _slide(path: Path, mpp: float | None = MPP, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = background(SIZE, SIZE, (64, 64, 576, 576), seed=seed)
    rng = np.random.default_rng(seed)
    for x, y in ((200, 200), (400, 300)):  # two dark blobs, something for the model to look at
        image[y - 20 : y + 20, x - 20 : x + 20] = rng.integers(40, 120, (40, 40, 3), dtype=np.uint8)
    return write_pyramid(path, image, mpp=mpp, levels=2, tile=128)


def _points(path: Path, points_px: list[tuple[float, float]], names_all_below: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    probabilities = [0.3 if names_all_below else 0.9] * len(points_px)
    return track1_json(path, points_px, MPP, probabilities)


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        return {row["slide"]: row for row in csv.DictReader(handle)}


def test_every_bad_input_is_one_line_and_the_rest_is_done(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slides, points = tmp_path / "slides", tmp_path / "points"
    slides.mkdir()
    points.mkdir()
    figures = [(200.0, 200.0), (400.0, 300.0)]
    _slide(slides / "good.tif")
    _points(points / "good.json", [*figures, (9000.0, 50.0)])  # one point off the slide
    _slide(slides / "nores.tif", mpp=None)
    _points(points / "nores.json", figures)
    _slide(slides / "pixels.tif")
    (points / "pixels.json").write_text(json.dumps({"type": "Multiple points", "points": [
        {"name": "mitotic figure", "point": [x, y, 0], "probability": 0.9} for x, y in figures]}))  # px, not mm
    _slide(slides / "empty.tif")
    _points(points / "empty.json", figures, names_all_below=True)  # the detector found no mitotic figure
    (slides / "broken.tif").write_bytes(b"II*\x00" + bytes(200))
    _points(points / "broken.json", figures)
    _slide(slides / "alone.tif")  # no points file
    _points(points / "orphan.json", figures)  # no slide
    out = tmp_path / "out"
    code = main(["slides", str(slides), "--points", str(points), "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err + captured.out
    rows = _rows(out / "cohort.csv")
    assert {name: row["status"] for name, row in rows.items()} == {
        "alone": "failed", "broken": "failed", "empty": "ok", "good": "ok", "nores": "failed", "pixels": "failed"}
    assert (rows["good"]["figures"], rows["good"]["points_outside"]) == ("2", "1")
    assert (rows["empty"]["figures"], rows["empty"]["atypical"], rows["empty"]["atypical_fraction"]) == ("0", "0", "")
    assert rows["empty"]["atypical_fraction_ci_low"] == "" and rows["empty"]["hotspot_figures"] == "0"
    problems = {name: rows[name]["problem"] for name in ("alone", "broken", "nores", "pixels")}
    assert "no points file for slide alone" in problems["alone"]
    assert "broken.tif: cannot read the slide (" in problems["broken"]
    assert "nores.tif: the file states no resolution" in problems["nores"] and "--mpp" in problems["nores"]
    assert "pixels.json: all 2 points lie outside" in problems["pixels"] and "--units px" in problems["pixels"]
    listed = captured.out[captured.out.index("problem(s)"):].splitlines()[1:]
    assert len(listed) == 5 and any("orphan.json: a points file without a slide" in line for line in listed)
    assert all(line.strip() for line in listed)  # one line each
    cohort = json.loads((out / "cohort.json").read_text())
    assert len(cohort["problems"]) == 5 and len(cohort["slides"]) == 6
    assert (out / "slides" / "empty" / "empty.geojson").is_file() and (out / "report.html").is_file()

    # the user's fixes: --mpp for the slide without a resolution, --units px for the pixel points
    assert main(["slides", str(slides / "nores.tif"), "--points", str(points / "nores.json"), "--out",
                 str(tmp_path / "fixed"), "--mpp", "0.25", "--no-progress"]) == 0
    assert _rows(tmp_path / "fixed" / "cohort.csv")["nores"]["mpp_source"] == "--mpp"
    assert main(["slides", str(slides / "pixels.tif"), "--points", str(points / "pixels.json"), "--out",
                 str(tmp_path / "fixed"), "--units", "px", "--no-progress"]) == 0
    assert _rows(tmp_path / "fixed" / "cohort.csv")["pixels"]["figures"] == "2"


def test_results_are_reused_only_for_the_same_inputs(tmp_path: Path) -> None:
    for name in ("A", "B"):
        _slide(tmp_path / f"{name}.tif", seed=ord(name))
        _points(tmp_path / f"{name}.json", [(200.0, 200.0), (400.0, 300.0)])
    slides, out = [tmp_path / "A.tif", tmp_path / "B.tif"], tmp_path / "out"
    first = analyse_slides(slides, tmp_path, out)
    assert [s.reused for s in first.slides] == [False, False]
    again = analyse_slides(slides, tmp_path, out)
    assert [s.reused for s in again.slides] == [True, True] and [s.row for s in again.slides] == [
        s.row for s in first.slides]
    _points(tmp_path / "B.json", [(200.0, 200.0)])  # B's detector output changed
    changed = analyse_slides(slides, tmp_path, out)
    assert [s.reused for s in changed.slides] == [True, False] and changed.slides[1].row["figures"] == 1
    other = analyse_slides(slides, tmp_path, out, options=SlideOptions(hotspot_area_mm2=2.0))  # another option
    assert [s.reused for s in other.slides] == [False, False]


def test_shards_split_a_cohort_and_a_plain_run_merges_them(tmp_path: Path) -> None:
    names = ["S1", "S2", "S3", "S4", "S5"]
    for i, name in enumerate(names):
        _slide(tmp_path / "slides" / f"{name}.tif", seed=i)
        _points(tmp_path / "points" / f"{name}.json", [(200.0, 200.0), (400.0, 300.0)][: 1 + i % 2])
    args = [str(tmp_path / "slides"), "--points", str(tmp_path / "points"), "--out", str(tmp_path / "out"),
            "--no-progress"]
    for shard in ("1/2", "2/2"):
        assert main(["slides", *args, "--shard", shard]) == 0
    one, two = _rows(tmp_path / "out" / "cohort.shard-1-of-2.csv"), _rows(tmp_path / "out" / "cohort.shard-2-of-2.csv")
    assert sorted(one) == ["S1", "S3", "S5"] and sorted(two) == ["S2", "S4"]
    assert not (tmp_path / "out" / "cohort.csv").exists()
    merged = analyse_slides([tmp_path / "slides"], tmp_path / "points", tmp_path / "out")
    assert all(s.reused for s in merged.slides)
    rows = _rows(tmp_path / "out" / "cohort.csv")
    assert sorted(rows) == names and rows == {**one, **two}
    with (tmp_path / "out" / "figures.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == sum(1 + i % 2 for i in range(len(names)))
    assert (tmp_path / "out" / "report.html").is_file()


def test_a_shard_outside_the_array_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _slide(tmp_path / "S.tif")
    with pytest.raises(SystemExit):
        main(["slides", str(tmp_path / "S.tif"), "--points", str(tmp_path), "--out", str(tmp_path / "o"),
              "--shard", "3/2"])
    assert "1 <= I <= N" in capsys.readouterr().err


def test_a_strip_tiff_with_micrometre_csv_points(tmp_path: Path) -> None:
    """A plain (strip) TIFF OpenSlide cannot read, points in µm from a CSV naming its slide."""
    image = background(SIZE, SIZE, (0, 0, SIZE, SIZE))
    tifffile.imwrite(tmp_path / "plain.tif", image, photometric="rgb", resolution=(20000, 20000),
                     resolutionunit="CENTIMETER")  # 0.5 µm/px
    (tmp_path / "pts.csv").write_text("slide,x_um,y_um\nplain.tif,100,150\nplain.tif,200,250\n")
    [result] = analyse_slides([tmp_path / "plain.tif"], tmp_path / "pts.csv").slides
    assert result.ok and result.row["mpp"] == pytest.approx(0.5)
    assert [(f["x_px"], f["y_px"]) for f in result.figures] == [(200.0, 300.0), (400.0, 500.0)]


def test_mistakes_before_any_slide_are_one_line_and_leave_nothing(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _slide(tmp_path / "A.tif")
    _slide(tmp_path / "B.tif", seed=1)
    _points(tmp_path / "one.json", [(200.0, 200.0)])
    out = tmp_path / "out"
    cases = [
        ([str(tmp_path / "nowhere.svs"), "--points", str(tmp_path / "one.json")], "nowhere.svs: no such slide"),
        ([str(tmp_path / "A.tif"), str(tmp_path / "B.tif"), "--points", str(tmp_path / "one.json")],
         "one points file for 2 slides"),
        ([str(tmp_path / "A.tif"), "--points", str(tmp_path / "none.json")], "none.json: no such points file"),
    ]
    for argv, expected in cases:
        assert main(["slides", *argv, "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
        assert not out.exists()


def test_a_fold_ensemble_with_tta_and_a_threshold_of_ones_own(tmp_path: Path) -> None:
    from tests.conftest import make_model_dir

    folds = tmp_path / "cv" / "folds"
    make_model_dir(folds / "a" / "model", bias=2.0, threshold=0.4)
    make_model_dir(folds / "b" / "model", bias=-2.0, threshold=0.6)
    _slide(tmp_path / "S.tif")
    _points(tmp_path / "S.json", [(200.0, 200.0), (400.0, 300.0)])
    [result] = analyse_slides([tmp_path / "S.tif"], tmp_path / "S.json", model=[tmp_path / "cv"],
                              options=SlideOptions(tta=True), device="cpu").slides
    assert result.ok and result.row["threshold"] == pytest.approx(0.5) and result.row["tta"] is True
    p = [f["p_atypical"] for f in result.figures]
    assert all(abs(v - 0.5) < 0.1 for v in p)  # sigmoid(2) and sigmoid(-2) averaged: about 0.5
    [lowered] = analyse_slides([tmp_path / "S.tif"], tmp_path / "S.json", model=[tmp_path / "cv"],
                               options=SlideOptions(threshold=0.0), device="cpu").slides
    assert lowered.row["threshold"] == 0.0 and lowered.row["atypical"] == 2


# ------------------------------------------------------------------ what an outside probe broke (and fixed)


def test_a_cohort_csv_that_spells_a_slide_two_ways_keeps_every_row(tmp_path: Path) -> None:
    """Rows naming slide ``A`` as ``A`` and as ``A.tif`` (or its path) are one slide: the second spelling's rows
    replaced the first's, so half the figures vanished with exit status 0."""
    _slide(tmp_path / "slides" / "A.tif")
    _slide(tmp_path / "slides" / "B.tif", seed=1)
    (tmp_path / "all.csv").write_text(f"slide,x,y\nA,200,200\nA.tif,400,300\n{tmp_path / 'slides' / 'A.tif'},300,"
                                      "250\nB.tif,200,200\n")
    cohort = analyse_slides([tmp_path / "slides"], tmp_path / "all.csv")
    assert {s.name: s.row["figures"] for s in cohort.slides} == {"A": 3, "B": 1} and not cohort.problems
    assert [(f["x_px"], f["y_px"]) for f in cohort.slides[0].figures] == [(200.0, 200.0), (400.0, 300.0),
                                                                         (300.0, 250.0)]


def test_the_output_folder_may_be_the_points_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--out detections/ --points detections/``: every points file was skipped as output, so every slide failed
    with 'no points file' beside its own points file; a re-run must not read its own tables as points either."""
    folder = tmp_path / "detections"
    for name in ("A", "B"):
        _slide(tmp_path / "slides" / f"{name}.tif", seed=ord(name))
        _points(folder / f"{name}.json", [(200.0, 200.0), (400.0, 300.0)])
    args = ["slides", str(tmp_path / "slides"), "--points", str(folder), "--out", str(folder), "--no-progress"]
    assert main(args) == 0
    assert main([*args, "--shard", "1/2"]) == 0
    assert main(args) == 0  # its cohort.csv, figures.csv and shard tables are not points files without a slide
    captured = capsys.readouterr()
    assert "problem" not in captured.out and "Traceback" not in captured.err
    assert {name: row["figures"] for name, row in _rows(folder / "cohort.csv").items()} == {"A": "2", "B": "2"}
    assert captured.out.count("ok (reused)") == 3  # the shard's slide and both slides of the last run


@pytest.mark.parametrize("damage", ["cut", "header-only", "not-utf8", "result-json"])
def test_damaged_stored_results_are_computed_again(tmp_path: Path, damage: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A slide's stored figures.csv cut short gave a traceback on the next run; one holding only its header was
    reused as 0 figures while cohort.csv still said 2 (a silent hole in the cohort's figures.csv)."""
    _slide(tmp_path / "A.tif")
    _points(tmp_path / "A.json", [(200.0, 200.0), (400.0, 300.0)])
    out = tmp_path / "out"
    args = ["slides", str(tmp_path / "A.tif"), "--points", str(tmp_path / "A.json"), "--out", str(out),
            "--no-progress"]
    assert main(args) == 0
    stored = out / "slides" / "A" / "figures.csv"
    whole = stored.read_text()
    damaged = {"cut": whole[: len(whole) * 2 // 3], "header-only": whole.splitlines()[0] + "\n",
               "not-utf8": "\udcff\udcfe", "result-json": whole}[damage]
    stored.write_bytes(damaged.encode("utf-8", "surrogateescape"))
    if damage == "result-json":
        (out / "slides" / "A" / "result.json").write_text('{"version": 1, "key": 5, "row": [')
    capsys.readouterr()
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "ok (reused)" not in captured.out
    assert stored.read_text() == whole
    with (out / "figures.csv").open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2


def test_a_listed_slide_that_does_not_exist_is_named_as_missing(tmp_path: Path) -> None:
    """A .txt list naming a slide that is not there said 'no points file for slide ...' when it had none either."""
    _slide(tmp_path / "A.tif")
    _points(tmp_path / "A.json", [(200.0, 200.0)])
    (tmp_path / "cohort.txt").write_text("A.tif\nghost.svs\n")
    cohort = analyse_slides([tmp_path / "cohort.txt"], tmp_path)
    assert [s.name for s in cohort.failed] == ["ghost"]
    assert cohort.failed[0].problem == f"{tmp_path / 'ghost.svs'}: no such slide file"


def test_the_python_call_takes_what_load_takes_and_refuses_what_the_parser_would(tmp_path: Path) -> None:
    """``model=`` as one path (a str was read letter by letter, a Path raised TypeError), ``options`` of the wrong
    type, no slides, and option values the command line's parser refuses (they gave 0 figures or every slide
    failing alike); one points class given as a string is that class, not its letters."""
    from mitotype.errors import DataError, MitotypeError
    from tests.conftest import make_model_dir

    _slide(tmp_path / "S.tif")
    _points(tmp_path / "S.json", [(200.0, 200.0), (400.0, 300.0)])
    model = make_model_dir(tmp_path / "model", bias=2.0, threshold=0.4)
    for given in (model, str(model)):
        [result] = analyse_slides(tmp_path / "S.tif", tmp_path / "S.json", model=given, device="cpu").slides
        assert result.ok and result.row["threshold"] == pytest.approx(0.4) and result.row["figures"] == 2
    [named] = analyse_slides(tmp_path / "S.tif", tmp_path / "S.json",
                             options=SlideOptions(point_names="mitotic figure")).slides
    assert named.row["figures"] == 2
    with pytest.raises(DataError, match=r"options must be a mitotype\.SlideOptions, got a dict"):
        analyse_slides(tmp_path / "S.tif", tmp_path / "S.json", options={"tta": True})
    with pytest.raises(DataError, match="slides: none given"):
        analyse_slides([], tmp_path / "S.json")
    for options, problem in (({"units": "inch"}, "units 'inch' is not one of"),
                             ({"points_format": "xml"}, "points_format 'xml' is not one of"),
                             ({"backend": "pil"}, "backend 'pil' is not one of"),
                             ({"min_probability": 2}, r"min_probability must be a number in \[0, 1\], got 2"),
                             ({"threshold": -0.1}, r"threshold must be a number in \[0, 1\]"),
                             ({"threshold": True}, r"threshold must be a number in \[0, 1\]")):
        with pytest.raises(MitotypeError, match=problem):
            SlideOptions(**options)
