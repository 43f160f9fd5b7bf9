"""The decode-once patch store: build, load, rebuild when an input changes, atomic and keyed by content."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datafactories import midog25_rows, patch_array, truncate, write_midog25, write_png
from PIL import Image

from mitotype.data.patches import load_patch
from mitotype.data.readers import read_dataset
from mitotype.data.records import FigureRecord
from mitotype.data.store import PatchStore, content_key, default_cache_dir
from mitotype.errors import DataError


@pytest.fixture
def records(tmp_path: Path) -> list[FigureRecord]:
    write_midog25(tmp_path / "ds", midog25_rows(12))
    return read_dataset(tmp_path / "ds").records


def test_build_then_load(records: list[FigureRecord], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    built = PatchStore.open_or_build(records, cache)
    assert built.built and len(built) == 12
    assert built.images.shape == (12, 128, 128, 3) and built.images.dtype == np.uint8
    assert isinstance(built.images, np.memmap) and not built.images.flags.writeable
    for i, r in enumerate(records):
        assert np.array_equal(built.images[i], load_patch(r))
    manifest = json.loads((built.path / "manifest.json").read_text())
    assert manifest["uids"] == [r.uid for r in records] and manifest["count"] == 12
    assert manifest["key"] == built.key and manifest["version"] == 1 and manifest["created"]
    loaded = PatchStore.open_or_build(records, cache)
    assert not loaded.built and loaded.key == built.key and loaded.path == built.path
    assert np.array_equal(np.asarray(loaded.images), np.asarray(built.images))
    assert sorted(p.name for p in cache.iterdir()) == [".locks", built.path.name]  # no temporary folder


def test_rows_follow_the_order_of_records(records: list[FigureRecord], tmp_path: Path) -> None:
    forward = PatchStore.open_or_build(records, tmp_path / "cache")
    backward = PatchStore.open_or_build(records[::-1], tmp_path / "cache")
    assert backward.built and backward.key != forward.key
    assert np.array_equal(np.asarray(backward.images)[::-1], np.asarray(forward.images))
    assert backward.records == records[::-1]


def test_a_changed_image_rebuilds(records: list[FigureRecord], tmp_path: Path) -> None:
    first = PatchStore.open_or_build(records, tmp_path / "cache")
    write_png(records[4].image, seed=4242)  # same name, new content
    second = PatchStore.open_or_build(records, tmp_path / "cache")
    assert second.built and second.key != first.key
    assert np.array_equal(second.images[4], patch_array(4242))
    assert np.array_equal(second.images[5], first.images[5])


def test_policy_and_crop_coordinates_are_part_of_the_key(tmp_path: Path) -> None:
    big = patch_array(1, 300)
    Image.fromarray(big).save(tmp_path / "slide.png")
    write_png(tmp_path / "odd.png", seed=3, size=150)

    def rec(uid: str, image: Path, x: int | None = None) -> FigureRecord:
        return FigureRecord(uid, image, 0, "g", "t", x=x, y=None if x is None else 100)

    a = [rec("a", tmp_path / "slide.png", 100), rec("b", tmp_path / "odd.png")]
    b = [rec("a", tmp_path / "slide.png", 101), rec("b", tmp_path / "odd.png")]
    assert content_key(a) != content_key(b)
    assert content_key(a) != content_key(a, policy="resize") != content_key(a, size=64)
    store = PatchStore.open_or_build(a, tmp_path / "cache")
    assert np.array_equal(store.images[0], big[36:164, 36:164])
    resized = PatchStore.open_or_build(a, tmp_path / "cache", policy="resize")
    assert resized.built and not np.array_equal(resized.images[1], store.images[1])


def test_broken_store_is_rebuilt(records: list[FigureRecord], tmp_path: Path) -> None:
    store = PatchStore.open_or_build(records, tmp_path / "cache")
    (store.path / "manifest.json").write_text("{not json")
    again = PatchStore.open_or_build(records, tmp_path / "cache")
    assert again.built and again.path == store.path
    np.save(again.path / "images.npy", np.zeros((3, 128, 128, 3), np.uint8))
    assert PatchStore.open_or_build(records, tmp_path / "cache").built


def test_failed_build_leaves_nothing(records: list[FigureRecord], tmp_path: Path) -> None:
    truncate(records[7].image)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=records[7].image.name):
        PatchStore.open_or_build(records, cache)
    assert [p.name for p in cache.iterdir()] == [".locks"]  # no store, no temporary folder
    with pytest.raises(DataError, match="no records"):
        PatchStore.open_or_build([], cache)


def test_a_store_left_half_built_by_a_killed_run_is_removed(records: list[FigureRecord], tmp_path: Path) -> None:
    """Issue 35: a build killed (or out of space) left a multi-MB temporary store behind for good."""
    import subprocess
    import sys

    from mitotype.ioutils import writer_tag

    cache = tmp_path / "cache"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    dead = cache / f".tmp-{writer_tag().split('-')[0]}-{gone}.0123456789abcdef-12345678"
    other_host = cache / ".tmp-0000ff-1.0123456789abcdef-12345678"
    for folder in (dead, other_host):
        folder.mkdir(parents=True)
        (folder / "images.npy").write_bytes(b"\0" * 1000)
    PatchStore.open_or_build(records, cache)
    assert not dead.exists() and other_host.exists()  # another host's builder may still be running


def test_default_cache_dir_follows_mitotype_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MITOTYPE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "mitotype" / "patches"
    monkeypatch.setenv("MITOTYPE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "patches"


@pytest.mark.shared
@pytest.mark.slow
def test_full_amibr_store(amibr, tmp_path: Path) -> None:
    store = PatchStore.open_or_build(amibr.records, tmp_path / "cache")
    assert store.built and store.images.shape == (3720, 128, 128, 3)
    for i in (0, 1234, 3719):
        assert np.array_equal(store.images[i], np.asarray(Image.open(amibr.records[i].image)))
    assert not PatchStore.open_or_build(amibr.records, tmp_path / "cache").built


def test_a_concurrent_finished_store_is_kept(records: list[FigureRecord], tmp_path: Path) -> None:
    from mitotype.data import store as store_module

    first = PatchStore.open_or_build(records, tmp_path / "cache")
    stamp = (first.path / "images.npy").stat().st_ino
    # a second builder that lost the race must keep the finished store, not replace it
    store_module._build(first.path, first.key, records, size=128, policy="center-crop", workers=1)
    assert (first.path / "images.npy").stat().st_ino == stamp
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".locks", first.path.name]


_BUILDER = """
import json, pathlib, sys, time
from mitotype.data.readers import read_dataset
from mitotype.data.store import PatchStore
records = read_dataset(sys.argv[1]).records
pathlib.Path(sys.argv[3] + "." + sys.argv[4]).touch()  # ready
while not pathlib.Path(sys.argv[3]).exists():
    time.sleep(0.001)
store = PatchStore.open_or_build(records, sys.argv[2], workers=1)
print(json.dumps({"built": store.built, "sum": int(store.images.sum(dtype="int64"))}))
"""


def test_two_processes_wanting_the_same_cold_store_build_it_once(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    write_midog25(tmp_path / "ds", midog25_rows(64))
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _BUILDER, str(tmp_path / "ds"), str(tmp_path / "cache"),
                               str(go), str(i)], stdout=subprocess.PIPE, text=True) for i in range(2)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"go.{i}").exists() for i in range(2)) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # both start together, so without the lock both would find no store and build it
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(r["built"] for r in results) == [False, True]
    assert results[0]["sum"] == results[1]["sum"] > 0
    stores = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(stores) == 1 and not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".tmp")]
