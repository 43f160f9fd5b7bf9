"""``mitotype slides`` on real figures (issue 33): real AMi-Br patches placed at known points on tiled pyramidal
TIFF slides, their Track 1 points in millimetres, and the real Track 1 container output."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from geojson_pydantic import FeatureCollection
from scipy.stats import binomtest

from mitotype.cli.main import main
from mitotype.slides import SlideOptions, analyse_slides
from tests.wsi_factory import Figure, amibr_patches, background, downscale, place, track1_json, write_pyramid

pytestmark = pytest.mark.shared

MPP = 0.25
SIZE = (3072, 2304)
TISSUE = (256, 256, 2816, 2048)
"""The tissue rectangle, level-0 px: 2560 x 1792 px = 0.2867 mm² at 0.25 µm/px."""
HOTSPOT_MM2 = 0.05
"""A 4:3 rectangle of 1033 x 775 px at 0.25 µm/px: holds the 4 x 4 cluster (420 x 420 px) and no other 4 points."""
CLUSTER = [(2100 + 140 * (i % 4), 1350 + 140 * (i // 4)) for i in range(16)]
SPARSE = [(400 + 400 * (i % 3), 400 + 400 * (i // 3)) for i in range(12)] + [(2300, 450), (2700, 450)]
"""Far enough from the cluster that no hotspot-sized rectangle holding it holds one of them too."""
CENTRES = CLUSTER + SPARSE
DECOYS = [(1200.5, 1900.0), (2600.0, 700.0), (700.0, 1700.0)]
"""Below the detector's threshold ("non-mitotic figure"): left out by default."""
OUTSIDE = [(3500.0, 100.0), (-40.0, 900.0)]
"""Called mitotic figures, but off the slide: counted, not classified."""


def _scene(root: Path, shared_data: Path, factor: int = 1) -> tuple[Path, Path, list[Figure]]:
    """The slide at ``MPP * factor`` µm/px (its patches downscaled by ``factor`` before placing) and its Track 1
    JSON (the same physical points whatever the resolution)."""
    root.mkdir(parents=True, exist_ok=True)
    patches = amibr_patches(shared_data, len(CENTRES), seed=33)
    figures = [Figure(p, label, uid, x, y) for (p, label, uid), (x, y) in zip(patches, CENTRES)]
    placed = [Figure(downscale(f.patch, factor) if factor > 1 else f.patch, f.label, f.uid, f.x // factor,
                     f.y // factor) for f in figures]
    w, h = SIZE[0] // factor, SIZE[1] // factor
    image = place(background(w, h, tuple(v // factor for v in TISSUE)), placed)  # type: ignore[arg-type]
    slide = write_pyramid(root / "S1.tif", image, mpp=MPP * factor)
    points = [(float(x), float(y)) for x, y in CENTRES + DECOYS + OUTSIDE]
    probabilities = [0.9] * len(CENTRES) + [0.3] * len(DECOYS) + [0.8] * len(OUTSIDE)
    track1_json(root / "S1.json", [(x / factor, y / factor) for x, y in points], MPP * factor, probabilities)
    return slide, root / "S1.json", figures


@pytest.fixture(scope="module")
def shipped_p(shared_data: Path):
    """p(atypical) of the scene's patches through the models layer directly, and the shipped model's threshold."""
    from mitotype.models.predict import load_ensemble
    from mitotype.models.shipped import get_shipped_model

    patches = [p for p, _, _ in amibr_patches(shared_data, len(CENTRES), seed=33)]  # the scene's, in its order
    ensemble, _ = load_ensemble([get_shipped_model().folder])
    return ensemble.predict(np.stack(patches)), ensemble.threshold(False)


@pytest.fixture(scope="module")
def cohort(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("scene")
    slide, points, _ = _scene(root / "in", shared_data)
    out = root / "out"
    assert main(["slides", str(slide), "--points", str(points), "--out", str(out), "--hotspot-area",
                 str(HOTSPOT_MM2), "--no-progress"]) == 0
    return out


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_figure_is_found_and_scored_as_predict_scores_its_patch(cohort: Path, shipped_p) -> None:
    p_ref, threshold = shipped_p
    figures = _csv(cohort / "figures.csv")
    assert [(float(f["x_px"]), float(f["y_px"])) for f in figures] == [(float(x), float(y)) for x, y in CENTRES]
    np.testing.assert_allclose([float(f["x_um"]) for f in figures], [x * MPP for x, _ in CENTRES], atol=0.01)
    np.testing.assert_allclose([float(f["p_atypical"]) for f in figures], p_ref, atol=1e-5)
    assert [f["class"] for f in figures] == ["atypical" if p >= threshold else "normal" for p in p_ref]
    assert {f["detector_class"] for f in figures} == {"mitotic figure"}
    assert all(float(f["detector_score"]) == pytest.approx(0.9) for f in figures)


def test_counts_fraction_interval_tissue_and_hotspot(cohort: Path, shipped_p) -> None:
    p_ref, threshold = shipped_p
    [row] = _csv(cohort / "cohort.csv")
    n, k = len(CENTRES), int((p_ref >= threshold).sum())
    assert (row["status"], int(row["figures"]), int(row["atypical"]), int(row["normal"])) == ("ok", n, k, n - k)
    assert float(row["atypical_fraction"]) == pytest.approx(k / n, abs=1e-6)
    wilson = binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert float(row["atypical_fraction_ci_low"]) == pytest.approx(wilson.low, abs=1e-5)
    assert float(row["atypical_fraction_ci_high"]) == pytest.approx(wilson.high, abs=1e-5)
    assert (int(row["points_read"]), int(row["points_kept"]), int(row["points_outside"])) == (
        len(CENTRES) + len(DECOYS) + len(OUTSIDE), len(CENTRES) + len(OUTSIDE), len(OUTSIDE))
    tissue = (TISSUE[2] - TISSUE[0]) * (TISSUE[3] - TISSUE[1]) * MPP * MPP / 1e6
    assert float(row["tissue_mm2"]) == pytest.approx(tissue, rel=0.05)
    assert float(row["figures_per_mm2"]) == pytest.approx(n / float(row["tissue_mm2"]), rel=1e-3)
    # the hotspot is where the dense cluster is, and counts exactly its figures
    in_cluster = np.arange(len(CENTRES)) < len(CLUSTER)
    assert int(row["hotspot_figures"]) == len(CLUSTER)
    assert int(row["hotspot_atypical"]) == int((p_ref[in_cluster] >= threshold).sum())
    x0, y0 = float(row["hotspot_x_um"]) / MPP, float(row["hotspot_y_um"]) / MPP
    x1, y1 = x0 + float(row["hotspot_width_um"]) / MPP, y0 + float(row["hotspot_height_um"]) / MPP
    assert all(x0 <= x < x1 and y0 <= y < y1 for x, y in CLUSTER)
    area = float(row["hotspot_width_um"]) * float(row["hotspot_height_um"]) / 1e6
    assert area == pytest.approx(HOTSPOT_MM2, rel=1e-3)
    figures = _csv(cohort / "figures.csv")
    assert [f["in_hotspot"] == "True" for f in figures] == list(in_cluster)


def test_the_qupath_layer_is_valid_geojson_with_what_qupath_reads(cohort: Path) -> None:
    data = json.loads((cohort / "slides" / "S1" / "S1.geojson").read_text())
    FeatureCollection.model_validate(data)  # RFC 7946 structure (coordinates are pixels, as in QuPath's own)
    points = [f for f in data["features"] if f["geometry"]["type"] == "Point"]
    figures = _csv(cohort / "figures.csv")
    assert len(points) == len(figures)
    for feature, figure in zip(points, figures):
        props = feature["properties"]
        assert props["objectType"] == "detection"
        assert props["classification"]["name"] == figure["class"].title()
        colour = props["classification"]["color"]
        assert len(colour) == 3 and all(0 <= c <= 255 for c in colour)
        assert props["measurements"]["p_atypical"] == pytest.approx(float(figure["p_atypical"]))
        assert feature["geometry"]["coordinates"] == [float(figure["x_px"]), float(figure["y_px"])]
    [hotspot] = [f for f in data["features"] if f["geometry"]["type"] == "Polygon"]
    assert hotspot["properties"]["objectType"] == "annotation"
    assert hotspot["properties"]["measurements"]["mitotic figures"] == len(CLUSTER)
    ring = hotspot["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5


def test_the_cohort_page_shows_the_slide_its_marks_hotspot_and_crops(cohort: Path) -> None:
    page = (cohort / "report.html").read_text()
    assert 'id="slide-S1"' in page
    section = page[page.index('id="slide-S1"'):]
    assert section.count("<circle") == len(CENTRES) and section.count('class="hotspot"') == 1
    frame = re.search(r'srcdoc="([^"]*)"', section)
    assert frame and "gallery-data" in frame.group(1)


def test_a_finished_cohort_reruns_without_loading_a_model(cohort: Path) -> None:
    before = (cohort / "cohort.csv").read_text()
    slide, points = cohort.parent / "in" / "S1.tif", cohort.parent / "in" / "S1.json"
    code = ("import sys; from mitotype.slides import analyse_slides, SlideOptions; "
            f"c = analyse_slides([{str(slide)!r}], {str(points)!r}, {str(cohort)!r}, "
            f"options=SlideOptions(hotspot_area_mm2={HOTSPOT_MM2})); "
            "print(all(s.reused for s in c.slides), 'torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["True", "False"]
    assert (cohort / "cohort.csv").read_text() == before


@pytest.mark.slow
def test_the_same_slide_at_half_the_resolution_gives_the_same_classes(shared_data: Path, tmp_path: Path,
                                                                     cohort: Path) -> None:
    slide, points, _ = _scene(tmp_path / "half", shared_data, factor=2)
    result = analyse_slides([slide], points, options=SlideOptions(hotspot_area_mm2=HOTSPOT_MM2))
    [half] = result.slides
    full = _csv(cohort / "figures.csv")
    assert half.ok and half.row["mpp"] == pytest.approx(0.5) and len(half.figures) == len(full)
    np.testing.assert_allclose([f["x_px"] for f in half.figures], [float(f["x_px"]) / 2 for f in full])
    same = sum(h["class"] == f["class"] for h, f in zip(half.figures, full))
    assert same >= 0.95 * len(full), f"{same} of {len(full)} classes agree"
    assert half.row["hotspot_figures"] == len(CLUSTER)


@pytest.mark.slow
def test_the_real_track1_output_on_a_slide_of_its_size(shared_data: Path, tmp_path: Path) -> None:
    """The official Track 1 container's output (millimetres): 26 figures above its threshold, 225 with every point."""
    source = shared_data / "midog25_t1_output_example" / "mitotic-figures.json"
    image = background(6600, 4900, (200, 150, 6400, 4700))
    slide = write_pyramid(tmp_path / "roi.tif", image, mpp=MPP, tile=512)
    default = analyse_slides([slide], source, tmp_path / "out").slides[0]
    assert default.ok and default.row["figures"] == 26 and default.row["points_outside"] == 0
    everything = analyse_slides([slide], source, options=SlideOptions(min_probability=0.0)).slides[0]
    assert everything.row["figures"] == 225 and everything.row["points_read"] == 225
    data = json.loads(source.read_text())
    kept = [p for p in data["points"] if p["name"] == "mitotic figure"]
    np.testing.assert_allclose([f["x_px"] for f in default.figures], [p["point"][0] * 1000 / MPP for p in kept],
                               atol=0.01)
    assert [f["detector_score"] for f in default.figures] == pytest.approx([p["probability"] for p in kept])
