"""The counting statistics of a slide: the Wilson interval, the hotspot search and the tissue mask."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import binomtest

from mitotype.slides.stats import find_hotspot, hotspot_size, wilson_interval
from mitotype.slides.tissue import tissue_area_mm2, tissue_mask
from tests.wsi_factory import GLASS, TISSUE


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (0, 12), (3, 12), (12, 12), (27, 100), (831, 3720)])
def test_wilson_interval_matches_scipy(k: int, n: int) -> None:
    reference = binomtest(k, n).proportion_ci(0.95, method="wilson")
    low, high = wilson_interval(k, n)
    assert (low, high) == (pytest.approx(reference.low, abs=1e-9), pytest.approx(reference.high, abs=1e-9))
    assert wilson_interval(0, 0) is None


def _brute_force(x: np.ndarray, y: np.ndarray, w: float, h: float) -> int:
    """The most points any w x h window (either orientation) holds, trying every pair of edges."""
    best = 0
    for ww, hh in ((w, h), (h, w)):
        for left, top in itertools.product(x, y):
            best = max(best, int(((x >= left) & (x < left + ww) & (y >= top) & (y < top + hh)).sum()))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_the_hotspot_holds_the_most_figures_any_rectangle_can(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, 6000, 70), rng.uniform(0, 4000, 70)  # µm
    atypical = rng.random(70) < 0.3
    spot = find_hotspot(x, y, atypical, area_mm2=2.37)
    w, h = hotspot_size(2.37)
    assert spot.figures == _brute_force(x, y, w, h)
    members = spot.contains(x, y)
    assert members.sum() == spot.figures and (members & atypical).sum() == spot.atypical
    assert {round(spot.width, 6), round(spot.height, 6)} == {round(w, 6), round(h, 6)}
    assert spot.width * spot.height / 1e6 == pytest.approx(2.37) and max(w, h) / min(w, h) == pytest.approx(4 / 3)


def test_the_hotspot_follows_the_figures_not_their_class() -> None:
    """Two clusters of 5: one all atypical, one all normal; the hotspot is the first in reading order either way,
    and with one more normal figure it moves to the normal cluster."""
    a = np.array([(100 + 50 * i, 100.0) for i in range(5)])
    b = np.array([(5000 + 50 * i, 3000.0) for i in range(5)])
    points = np.vstack([a, b])
    atypical = np.array([True] * 5 + [False] * 5)
    spot = find_hotspot(points[:, 0], points[:, 1], atypical, 2.0)
    assert (spot.figures, spot.atypical) == (5, 5)
    more = np.vstack([points, [[5300.0, 3000.0]]])
    spot = find_hotspot(more[:, 0], more[:, 1], np.append(atypical, False), 2.0)
    assert (spot.figures, spot.atypical) == (6, 0)
    assert find_hotspot(np.zeros(0), np.zeros(0), np.zeros(0, bool)) is None


def test_tissue_mask_measures_the_stained_area() -> None:
    thumb = np.empty((400, 600, 3), np.uint8)
    thumb[:] = GLASS
    thumb[50:250, 100:400] = TISSUE  # 200 x 300 px of tissue
    thumb[120:130, 200:210] = GLASS  # a small hole inside: still tissue
    thumb[350:353, 500:503] = TISSUE  # a speck of debris: not tissue
    thumb[300:400, 0:100] = 0  # black padding outside the scan: not tissue
    mask = tissue_mask(thumb, um_per_px=16.0)
    assert tissue_area_mm2(mask, 16.0) == pytest.approx(200 * 300 * 16 * 16 / 1e6, rel=0.01)
    assert not tissue_mask(np.full((100, 100, 3), GLASS, np.uint8), 16.0).any()
