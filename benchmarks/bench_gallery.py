"""The HTML gallery at 10,000 real figures: time to write it, its size, and time until a browser shows it.

Figures are the real AMi-Br patches (repeated up to ``--figures``) with made-up probabilities: what is
measured is the page, not a model. The browser time is Chromium's, headless, from start to the first
screen built by the page's script (``data-ready``), with a virtual time budget: it shows that opening a
10,000-figure page costs the first screen, not every figure. Writes ``benchmarks/results/gallery.json``.

Run: ``python benchmarks/bench_gallery.py`` (needs ``chromium`` on the PATH for the browser figure).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, run_script, shared_data_dir, write_result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=int, default=10_000)
    parser.add_argument("--data", type=Path, default=None, help="AMi-Br folder (default: shared data)")
    args = parser.parse_args(argv)

    from mitotype.data.readers import read_dataset
    from mitotype.data.store import PatchStore
    from mitotype.evaluation.gallery import write_gallery

    data = args.data or shared_data_dir() / "amibr"
    if not (data / "AMI-BR.csv").is_file():
        print(f"AMi-Br not found at {data}; set MITOTYPE_SHARED_DATA", file=sys.stderr)
        return 2
    records = read_dataset(data).records
    with tempfile.TemporaryDirectory(prefix="mitotype-gallery-") as tmp:
        store = PatchStore.open_or_build(records, Path(tmp) / "cache")
        reps = np.arange(args.figures) % len(records)
        images = np.asarray(store.images)[reps]
        labels = np.array([records[i].label for i in reps])
        rng = np.random.default_rng(0)
        p = np.clip(0.45 * labels + 0.55 * rng.random(args.figures), 0, 1)
        page = Path(tmp) / "gallery.html"
        t = time.perf_counter()
        write_gallery(page, images, p, 0.5, [f"{records[i].uid}#{k}" for k, i in enumerate(reps)],
                      labels=labels, domains=[records[i].domain for i in reps],
                      votes=[f"{records[i].atypical_votes}/{records[i].votes_cast}" for i in reps])
        write_s = time.perf_counter() - t
        size_mb = page.stat().st_size / 1e6
        browser: dict[str, float | int | None] = {"seconds_to_first_screen": None, "tiles_built": None}
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium:
            t = time.perf_counter()
            dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                  "--window-size=1400,1000", "--virtual-time-budget=2000", "--dump-dom",
                                  page.as_uri()], capture_output=True, text=True, timeout=300).stdout
            browser = {"seconds_to_first_screen": round(time.perf_counter() - t, 2),
                       "tiles_built": len(re.findall(r'class="tile[ "]', dom)),
                       "script_finished": 'data-ready="1"' in dom}
    figures = {"figures": args.figures, "write_seconds": round(write_s, 2), "html_megabytes": round(size_mb, 1),
               "bytes_per_figure": round(size_mb * 1e6 / args.figures), **browser}
    path = write_result("gallery", command_line(), figures)
    print(f"{args.figures} figures: written in {write_s:.1f} s, {size_mb:.1f} MB; browser {browser} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
