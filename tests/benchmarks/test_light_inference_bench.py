"""The light-inference benchmark's measuring tools: a child's own peak memory and time, sizes on disk."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import load_benchmark

bench = load_benchmark("bench_light_inference")


def test_a_childs_peak_memory_and_time_are_its_own() -> None:
    env = dict(os.environ)
    touch = "b = bytearray(300 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"
    big = bench.run_measured([sys.executable, "-c", touch], env)
    held = bytearray(400 * 1024 * 1024)
    held[::4096] = b"x" * len(held[::4096])  # this process is large: a child forked from it would count it
    small = bench.run_measured([sys.executable, "-c", "pass"], env)
    del held
    assert big["peak_rss_mb"] > 300 > small["peak_rss_mb"]  # its own peak: not the largest child's, not ours
    assert big["wall_s"] > 0 and big["cpu_s"] >= 0
    summary = bench.summarise([small, big, small])
    assert summary["median_peak_rss_mb"] == round(small["peak_rss_mb"], 1)
    with pytest.raises(SystemExit, match="exited 3"):
        bench.run_measured([sys.executable, "-c", "import sys; sys.exit(3)"], env)


def test_sizes_on_disk_count_blocks_and_skip_links(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 2_000_000)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert 1.9 <= bench.dir_mb(tmp_path) <= 2.2
