"""The HTML gallery: sections a pathologist reads first, packed thumbnails, and a real browser render."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mitotype.evaluation.gallery import SHEET_TILES, build_gallery_data, write_gallery


def _figures(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, size=(n, 128, 128, 3), dtype=np.uint8)
    labels = (rng.random(n) < 0.3).astype(int)
    p = np.clip(0.4 * labels + 0.6 * rng.random(n), 0, 1)
    domains = [("scanner A", "scanner B")[i % 2] for i in range(n)]
    return images, p, labels, domains


def _payload(page: str) -> dict:
    blob = re.search(r'<script type="application/json" id="gallery-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(blob.replace("<\\/", "</"))


def test_errors_per_domain_near_threshold_and_sorted_order() -> None:
    images, p, labels, domains = _figures(300)
    data = build_gallery_data(images, p, 0.5, [f"f{i}" for i in range(300)], labels=labels, domains=domains,
                              votes=[f"{i % 4}/3" for i in range(300)], n_near=20)
    by_title = {s["title"].split(":")[0]: s["items"] for s in data.sections}
    for dom in ("scanner A", "scanner B"):
        in_dom = [i for i in range(300) if domains[i] == dom]
        fp = by_title[f"False positives in {dom}"]
        fn = by_title[f"False negatives in {dom}"]
        assert set(fp) == {i for i in in_dom if p[i] >= 0.5 and labels[i] == 0}
        assert set(fn) == {i for i in in_dom if p[i] < 0.5 and labels[i] == 1}
        assert [p[i] for i in fp] == sorted((p[i] for i in fp), reverse=True)  # surest mistakes first
        assert [p[i] for i in fn] == sorted(p[i] for i in fn)
    near = next(s for s in data.sections if s["kind"] == "near")["items"]
    gap = np.abs(p - 0.5)
    assert len(near) == 20 and max(gap[near]) <= np.sort(gap)[19]
    everything = next(s for s in data.sections if s["kind"] == "all")["items"]
    assert sorted(everything) == list(range(300)) and list(p[everything]) == sorted(p, reverse=True)
    assert data.threshold == 0.5 and data.rows[7]["v"] == "3/3" and data.rows[0]["dom"] == "scanner A"


def test_without_labels_only_prediction_sections_and_per_figure_thresholds() -> None:
    images, p, _, _ = _figures(40)
    thr = np.where(np.arange(40) < 20, 0.3, 0.6)
    data = build_gallery_data(images, p, thr, [str(i) for i in range(40)])
    assert [s["kind"] for s in data.sections] == ["near", "all"]
    assert data.threshold is None
    assert [r["d"] for r in data.rows] == [int(p[i] >= thr[i]) for i in range(40)]
    with pytest.raises(ValueError, match="must match"):
        build_gallery_data(images[:3], p, 0.5, ["a"] * 40)


def test_thumbnails_are_packed_into_sheets() -> None:
    n = SHEET_TILES * SHEET_TILES + 5  # one full sheet and a second with 5 thumbnails
    images, p, _, _ = _figures(n)
    images[SHEET_TILES + 1] = 0  # a black figure, to find at its place in the first sheet
    data = build_gallery_data(images, p, 0.5, [str(i) for i in range(n)], thumb_size=32)
    assert len(data.sheets) == 2
    first = Image.open(io.BytesIO(base64.b64decode(data.sheets[0])))
    assert first.format == "JPEG" and first.size == (SHEET_TILES * 32, SHEET_TILES * 32)
    assert np.asarray(first)[32:64, 32:64].mean() < 12  # tile (row 1, column 1)
    assert Image.open(io.BytesIO(base64.b64decode(data.sheets[1]))).size == (SHEET_TILES * 32, 32)


def test_written_page_is_self_contained(tmp_path: Path) -> None:
    images, p, labels, domains = _figures(60)
    out = write_gallery(tmp_path / "g" / "gallery.html", images, p, 0.42, [f"id<{i}>" for i in range(60)],
                        labels=labels, domains=domains, title="t <b>", meta_lines=["model: m"])
    page = out.read_text()
    assert "<b>" not in page.split("<script")[0].split("<style>")[0]  # the title is escaped
    assert 'src="http' not in page and "href=\"http" not in page  # no external assets
    payload = _payload(page)
    assert len(payload["rows"]) == 60 and payload["threshold"] == 0.42
    assert payload["rows"][3]["id"] == "id<3>"
    assert "threshold 0.420" in page and 'class="threshold"' in page
    assert [s["id"] for s in payload["sections"]][-2:] == ["near-threshold", "all"]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_renders_in_a_real_browser(tmp_path: Path) -> None:
    n = 2000  # many chunks of tiles: the page must build the first chunks, not all 2000 at once
    images, p, _, _ = _figures(n)
    p = p**4  # few figures above the threshold, so the divider falls in the first chunk
    assert 0 < (p >= 0.9).sum() < 100
    page = tmp_path / "gallery.html"
    write_gallery(page, images, p, 0.9, [str(i) for i in range(n)])
    dom = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,900",
         "--virtual-time-budget=4000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert 'data-ready="1"' in dom  # the script ran to its end
    tiles = len(re.findall(r'class="tile[ "]', dom))
    assert 48 < tiles < n  # lazily built: figures below the fold wait for scrolling
    assert "threshold 0.900: called atypical above" in dom  # the divider in the sorted section
