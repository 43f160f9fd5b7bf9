"""Figures given as x/y on a whole-slide image, read by region through OpenSlide (the ``wsi`` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from mitotype.data.patches import load_patch
from mitotype.data.readers import read_dataset

openslide = pytest.importorskip("openslide", reason="OpenSlide not installed (pip install 'mitotype[wsi]')")


def _pyramid(path: Path, image: np.ndarray) -> Path:
    """A tiled, pyramidal TIFF (three levels), as scanners' generic TIFF exports are."""
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, tile=(256, 256), photometric="rgb", compression="deflate", subifds=2)
        for step in (2, 4):
            tif.write(image[::step, ::step], tile=(256, 256), photometric="rgb", compression="deflate",
                      subfiletype=1)
    return path


def test_coords_on_a_pyramidal_tiff_are_read_by_region(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    slide_pixels = rng.integers(0, 255, (1024, 1536, 3), dtype=np.uint8)
    slide = _pyramid(tmp_path / "slide.tif", slide_pixels)
    assert openslide.OpenSlide.detect_format(str(slide)) == "generic-tiff"
    (tmp_path / "figures.csv").write_text("image,x,y,label\nslide.tif,300,400,atypical\nslide.tif,20,1000,normal\n")
    opened = []
    real = openslide.OpenSlide
    monkeypatch.setattr(openslide, "OpenSlide", lambda p: opened.append(p) or real(p))
    records = read_dataset(tmp_path / "figures.csv", fmt="coords").records
    assert [r.label for r in records] == [1, 0]
    inside = load_patch(records[0])
    assert np.array_equal(inside, slide_pixels[400 - 64 : 400 + 64, 300 - 64 : 300 + 64])
    edge = load_patch(records[1])  # centred 20 px from the left and 24 px from the bottom: black padding
    assert np.array_equal(edge[:88, 44:], slide_pixels[1000 - 64 :, : 20 + 64])
    assert not edge[:, :44].any() and not edge[88:].any()
    assert opened, "the crops were not read through OpenSlide"
