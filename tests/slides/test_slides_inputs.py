"""What ``mitotype slides`` reads: slide resolutions, the two slide backends, the 32 µm field at any resolution,
every points format, and the pairing of slides with points files by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mitotype.data.patches import crop_centered
from mitotype.errors import DataError
from mitotype.slides.fields import read_fields
from mitotype.slides.pairing import find_slides, pair_points, slide_name
from mitotype.slides.points import read_point_file, resolve_units, select_points, to_level0
from mitotype.slides.resolution import implausible
from mitotype.slides.wsi import open_slide
from tests.wsi_factory import write_pyramid

pytest.importorskip("openslide", reason="OpenSlide not installed (pip install 'mitotype[wsi]')")


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------- resolution


@pytest.mark.parametrize(("options", "expected", "source"), [
    ({"resolution": (40000, 40000), "resolutionunit": "CENTIMETER"}, 0.25, "tiff-tags"),
    ({"resolution": (50800, 50800), "resolutionunit": "INCH"}, 0.5, "tiff-tags"),
    ({"resolution": (1, 1), "resolutionunit": "NONE"}, None, None),
    ({}, None, None),
])
def test_resolution_from_tiff_tags(tmp_path: Path, options: dict, expected: float | None, source: str | None) -> None:
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, _noise(300, 400), photometric="rgb", **options)
    with open_slide(path) as slide:
        assert slide.dimensions == (400, 300)
        if expected is None:
            assert slide.resolution is None or slide.resolution.source not in ("tiff-tags", "openslide")
        else:
            assert slide.resolution.mpp == pytest.approx(expected) and slide.resolution.source == source


def test_resolution_from_ome_metadata_with_its_unit(tmp_path: Path) -> None:
    path = tmp_path / "s.ome.tif"
    tifffile.imwrite(path, _noise(256, 256), photometric="rgb", tile=(128, 128),
                     metadata={"axes": "YXS", "PhysicalSizeX": 250, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 250,
                               "PhysicalSizeYUnit": "nm"})
    with open_slide(path) as slide:
        assert slide.resolution.mpp == pytest.approx(0.25) and slide.resolution.source == "ome"
    assert slide_name(path) == "s"


def test_a_writers_72_dpi_default_is_not_a_resolution(tmp_path: Path) -> None:
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, _noise(64, 64), photometric="rgb", resolution=(72, 72), resolutionunit="INCH")
    with open_slide(path) as slide:
        reason = implausible(slide.resolution)
    assert reason is not None and "72 dpi" in reason


# ------------------------------------------------------------------------------------------- backends


def test_both_backends_read_the_same_pixels_at_every_level(tmp_path: Path) -> None:
    image = _noise(900, 1300, seed=1)
    path = write_pyramid(tmp_path / "s.tif", image, mpp=0.25, tile=128)
    with open_slide(path, "openslide") as a, open_slide(path, "tifffile") as b:
        assert a.level_dimensions == b.level_dimensions == [(1300, 900), (650, 450), (325, 225)]
        rng = np.random.default_rng(0)
        for level in range(3):
            w, h = a.level_dimensions[level]
            for _ in range(8):
                x, y = int(rng.integers(-60, w)), int(rng.integers(-60, h))
                assert np.array_equal(a.read_region(level, x, y, 100, 70), b.read_region(level, x, y, 100, 70))
        assert np.array_equal(b.read_region(0, 10, 20, 50, 40), image[20:60, 10:60])
        assert not b.read_region(0, 1290, 890, 30, 30)[10:, 10:].any()  # outside the slide: black


def test_auto_reads_subifd_pyramids_and_strip_tiffs_with_tifffile(tmp_path: Path) -> None:
    image = _noise(600, 800, seed=2)
    sub = write_pyramid(tmp_path / "sub.tif", image, mpp=0.25, tile=128, subifds=True)
    strips = tmp_path / "strips.tif"
    tifffile.imwrite(strips, image, photometric="rgb", rowsperstrip=64, resolution=(40000, 40000),
                     resolutionunit="CENTIMETER")
    with open_slide(sub) as slide:  # OpenSlide would see level 0 only
        assert slide.backend == "tifffile" and len(slide.level_dimensions) == 3
    with open_slide(strips) as slide:  # OpenSlide cannot read strips
        assert slide.backend == "tifffile" and slide.resolution.mpp == pytest.approx(0.25)
        assert np.array_equal(slide.read_region(0, 100, 50, 200, 150), image[50:200, 100:300])
        assert slide.thumbnail(200).shape == (150, 200, 3)


def test_a_file_that_is_not_a_slide_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.tif"
    path.write_bytes(b"II*\x00 not a tiff")
    with pytest.raises(DataError, match=r"broken.tif: "):
        open_slide(path)


# --------------------------------------------------------------------------------------------- fields


def test_the_field_is_read_from_the_level_at_the_models_resolution(tmp_path: Path) -> None:
    """An 80x slide (0.125 µm/px) whose level 1 is 0.25 µm/px gives the 0.25 µm/px crops pixel for pixel; a
    20x slide (0.5 µm/px) gives the 64 px field enlarged to 128 px."""
    base = _noise(512, 512, seed=3)
    fine = base.repeat(2, axis=0).repeat(2, axis=1)  # the same tissue at twice the sampling
    path = write_pyramid(tmp_path / "fine.tif", fine, mpp=0.125, tile=128)
    x, y = np.array([400.0, 600.0]), np.array([300.0, 700.0])  # level-0 (0.125 µm/px) pixels
    with open_slide(path) as slide:
        crops = read_fields(slide, 0.125, x, y)
    for crop, cx, cy in zip(crops, x, y):
        assert np.array_equal(crop, crop_centered(base, int(cx) // 2, int(cy) // 2))
    yy, xx = np.mgrid[0:512, 0:512]
    smooth = (127 + 60 * np.sin(xx / 23.0)[..., None] + 60 * np.cos(yy / 17.0)[..., None]).repeat(3, axis=2)
    smooth = smooth.astype(np.uint8)
    half = smooth.reshape(256, 2, 256, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    coarse = write_pyramid(tmp_path / "coarse.tif", half, mpp=0.5, tile=128)
    with open_slide(coarse) as slide:
        crops = read_fields(slide, 0.5, np.array([128.0]), np.array([128.0]))
    error = np.abs(crops[0].astype(int) - crop_centered(smooth, 256, 256).astype(int))
    assert crops.shape == (1, 128, 128, 3) and error.mean() < 0.8  # the same place and scale (half a pixel off: 0.9)


# --------------------------------------------------------------------------------------------- points


def test_track1_points_selection_and_units(tmp_path: Path) -> None:
    path = tmp_path / "mitotic-figures.json"
    path.write_text(json.dumps({"type": "Multiple points", "points": [
        {"name": "mitotic figure", "point": [0.1, 0.2, 0], "probability": 0.9},
        {"name": "non-mitotic figure", "point": [0.3, 0.4, 0], "probability": 0.4},
        {"name": "mitotic figure", "point": [0.5, 0.6, 0], "probability": 0.6}]}))
    [points] = read_point_file(path)
    assert points.fmt == "track1" and list(select_points(points)) == [True, False, True]
    assert list(select_points(points, min_probability=0.5)) == [True, False, True]
    assert list(select_points(points, min_probability=0.0)) == [True, True, True]
    assert resolve_units(points, "auto", slide_states_resolution=True) == "mm"
    assert resolve_units(points, "auto", slide_states_resolution=False) == "px"
    np.testing.assert_allclose(to_level0(points.x, "mm", 0.25), [400, 1200, 2000])


def test_qupath_geojson_points_detections_and_regions(tmp_path: Path) -> None:
    square = [[[0, 0], [10, 0], [10, 20], [0, 20], [0, 0]]]
    features = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 6]},
         "properties": {"objectType": "annotation", "classification": {"name": "Mitosis", "color": [1, 2, 3]}}},
        {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[1, 1], [2, 2]]}, "properties": {}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": square},
         "properties": {"objectType": "detection", "measurements": {"Probability": 0.7}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [900, 0], [900, 900], [0, 0]]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}},
    ]
    path = tmp_path / "s.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    [points] = read_point_file(path)
    assert list(zip(points.x, points.y)) == [(5, 6), (1, 1), (2, 2), (5, 10)]
    assert points.names[0] == "Mitosis" and points.score[3] == pytest.approx(0.7) and points.skipped == 1
    assert list(select_points(points, names=["mitosis"])) == [True, False, False, False]
    (tmp_path / "list.json").write_text(json.dumps(features[:1]))  # QuPath's older export: a bare list
    assert read_point_file(tmp_path / "list.json")[0].fmt == "geojson"


def test_csv_points_in_micrometres_for_a_whole_cohort(tmp_path: Path) -> None:
    path = tmp_path / "all.csv"
    path.write_text("Image,Class,Centroid X µm,Centroid Y µm\nA.svs,Mitosis,10,20\nB.svs,Mitosis,30,40\n"
                    "A.svs,Mitosis,50,60\n")
    sets = {s.slide: s for s in read_point_file(path)}
    assert set(sets) == {"A.svs", "B.svs"} and sets["A.svs"].units == "um"
    assert list(sets["A.svs"].x) == [10, 50]
    np.testing.assert_allclose(to_level0(sets["A.svs"].x, "um", 0.25), [40, 200])
    (tmp_path / "bad.csv").write_text("x,y\n1,abc\n")
    with pytest.raises(DataError, match=r"bad.csv, row 2, y: 'abc' is not a number"):
        read_point_file(tmp_path / "bad.csv")


@pytest.mark.parametrize("content", [
    [{"x1": 10, "y1": 20, "x2": 30, "y2": 60, "score": 0.8}],
    {"detections": [{"xmin": 10, "ymin": 20, "xmax": 30, "ymax": 60, "confidence": 0.8}]},
    [{"bbox": [10, 20, 20, 40], "score": 0.8, "category_id": 1}],  # COCO: x, y, width, height
    {"boxes": [[10, 20, 30, 60]], "scores": [0.8], "labels": [1]},  # torchvision
])
def test_detector_boxes_give_their_centres(tmp_path: Path, content) -> None:
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(content))
    [points] = read_point_file(path)
    assert points.fmt == "boxes" and (points.x[0], points.y[0], points.score[0]) == (20, 40, pytest.approx(0.8))


def test_points_files_that_cannot_be_read_say_why(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{ nope")
    with pytest.raises(DataError, match=r"a.json: not valid JSON"):
        read_point_file(tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps({"something": 1}))
    with pytest.raises(DataError, match=r"b.json: cannot tell what this JSON holds"):
        read_point_file(tmp_path / "b.json")
    (tmp_path / "c.json").write_text(json.dumps({"points": [{"point": [1, 2]}]}))
    [points] = read_point_file(tmp_path / "c.json")
    with pytest.raises(DataError, match="no score to re-threshold"):
        select_points(points, min_probability=0.5)


# -------------------------------------------------------------------------------------------- pairing


def test_slides_and_points_are_paired_by_name(tmp_path: Path) -> None:
    slides_dir, points_dir = tmp_path / "slides", tmp_path / "points"
    for name in ("A1.svs", "A10.ome.tif", "sub/B.ndpi", "C.tif", "D.mrxs"):
        (slides_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (slides_dir / name).write_bytes(b"x")
    (slides_dir / "notes.txt").write_text("not a slide")
    for name in ("A1.json", "A10_detections.csv", "B/mitotic-figures.json", "C.geojson", "C_old.json", "E.json"):
        (points_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (points_dir / name).write_text("{}")
    slides = find_slides([slides_dir])
    assert [slide_name(s) for s in slides] == ["A1", "A10", "B", "C", "D"]
    pairing = pair_points(slides, points_dir)
    found = {item.name: (item.points.relative_to(points_dir).as_posix() if item.points else item.problem)
             for item in pairing.slides}
    assert found["A1"] == "A1.json" and found["A10"] == "A10_detections.csv"
    assert found["B"] == "B/mitotic-figures.json"
    assert found["C"].startswith("several points files for slide C") and "no points file for slide D" in found["D"]
    [orphan] = pairing.unpaired_points
    assert "E.json: a points file without a slide" in orphan and "\n" not in orphan


def test_a_list_of_slides_and_a_name_given_twice(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "S.svs").write_bytes(b"x")
    (tmp_path / "b" / "S.svs").write_bytes(b"x")
    (tmp_path / "list.txt").write_text("# cohort\na/S.svs\nmissing.svs\n")
    assert [p.name for p in find_slides([tmp_path / "list.txt"])] == ["S.svs", "missing.svs"]
    with pytest.raises(DataError, match="two slides are named 'S'"):
        find_slides([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(DataError, match="nowhere: no such slide, folder or list"):
        find_slides([tmp_path / "nowhere"])


def test_track1_points_without_the_containers_names_are_refused(tmp_path: Path) -> None:
    """A 'Multiple points' file whose points carry no 'mitotic figure' / 'non-mitotic figure' name (a converter's
    output) kept none of them by default: an ok slide with 0 figures. Its detector's decision is unknown, so it
    is one line saying how to choose; by score or by name it is read."""
    path = tmp_path / "t1.json"
    path.write_text(json.dumps({"type": "Multiple points", "points": [
        {"point": [0.1, 0.2, 0], "probability": 0.9}, {"name": "", "point": [0.3, 0.4, 0], "probability": 0.2}]}))
    [points] = read_point_file(path)
    with pytest.raises(DataError, match=r"t1.json: none of its 2 points is named 'mitotic figure' or "
                                        r"'non-mitotic figure'.*--min-probability P.*--points-class NAME"):
        select_points(points)
    assert select_points(points, min_probability=0.5).tolist() == [True, False]
    below = tmp_path / "below.json"  # the container's own words, every point below its threshold: 0 figures is right
    below.write_text(json.dumps({"type": "Multiple points", "points": [
        {"name": "non-mitotic figure", "point": [0.1, 0.2, 0], "probability": 0.2}]}))
    assert select_points(read_point_file(below)[0]).tolist() == [False]
