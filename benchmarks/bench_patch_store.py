"""Patch store vs per-sample PIL decoding on the real AMi-Br patches (3,720 PNGs).

Measures, in a fresh temporary cache: building the store (hash + decode into the memmap), opening it
again (hash + manifest check), one full pass over the memmap, and one "epoch" of plain per-sample
PIL decoding (what a naive Dataset does every epoch). Writes ``benchmarks/results/patch_store.json``.

Run: ``python benchmarks/bench_patch_store.py`` (data from ``MITOTYPE_SHARED_DATA``, default
``<repo>/../shared/data``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, run_script, shared_data_dir, write_result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="AMi-Br folder (default: shared data)")
    parser.add_argument("--workers", type=int, default=None, help="decode threads (default: cores, max 8)")
    args = parser.parse_args(argv)

    from PIL import Image

    from mitotype.data.patches import default_workers
    from mitotype.data.readers import read_dataset
    from mitotype.data.store import PatchStore

    data = args.data or shared_data_dir() / "amibr"
    if not (data / "AMI-BR.csv").is_file():
        print(f"AMi-Br not found at {data}; set MITOTYPE_SHARED_DATA", file=sys.stderr)
        return 2
    t = time.perf_counter()
    records = read_dataset(data, check="exists").records
    read_s = time.perf_counter() - t
    workers = args.workers or default_workers()

    with tempfile.TemporaryDirectory(prefix="mitotype-bench-") as cache:
        built = PatchStore.open_or_build(records, cache, workers=workers)
        assert built.built
        loaded = PatchStore.open_or_build(records, cache, workers=workers)
        assert not loaded.built and loaded.key == built.key

        t = time.perf_counter()
        checksum = 0
        for start in range(0, len(loaded), 256):  # one pass in batch-sized reads, as a loader does
            batch = np.asarray(loaded.images[start : start + 256], dtype=np.uint8)
            checksum += int(batch.sum(dtype=np.uint64))
        memmap_pass_s = time.perf_counter() - t

        t = time.perf_counter()
        pil_checksum = 0
        for r in records:
            with Image.open(r.image) as image:
                pil_checksum += int(np.asarray(image.convert("RGB")).sum(dtype=np.uint64))
        pil_s = time.perf_counter() - t
        assert pil_checksum == checksum, "store and PIL decode disagree"
        store_mb = (Path(loaded.path) / "images.npy").stat().st_size / 1e6

    figures = {
        "figures": len(records),
        "read_dataset_labels_seconds": round(read_s, 3),
        "store_build_seconds": round(built.seconds, 3),
        "store_load_seconds": round(loaded.seconds, 3),
        "memmap_full_pass_seconds": round(memmap_pass_s, 3),
        "pil_decode_epoch_seconds": round(pil_s, 3),
        "speedup_per_epoch_memmap_vs_pil": round(pil_s / max(memmap_pass_s, 1e-9), 1),
        "store_megabytes": round(store_mb, 1),
        "decode_workers": workers,
    }
    path = write_result("patch_store", command_line(), figures,
                        extra={"data": "AMi-Br patches (128x128 RGB PNG)", "cache": "fresh temporary folder",
                               "note": "load = content hash of all files + manifest check + memmap open; "
                                       "PIL epoch is single-threaded per-sample decoding"})
    for key, value in figures.items():
        print(f"{key:36s} {value}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
