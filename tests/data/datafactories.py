"""Factories of tiny datasets for the data-layer tests (written into tmp_path, never into the repo).

A uniquely named module (not ``conftest``) so that tests can import it directly."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mitotype.data.readers.midog25 import COLUMNS as MIDOG25_COLUMNS


def patch_array(seed: int, size: int = 128) -> np.ndarray:
    """A distinct pinkish RGB patch per seed."""
    rng = np.random.default_rng(seed)
    base = np.array([230, 170, 200], np.int16)
    noise = rng.integers(-40, 40, (size, size, 3), dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_png(path: Path, seed: int = 0, size: int | tuple[int, int] = 128, mode: str = "RGB") -> Path:
    """A PNG patch; ``mode`` L/RGBA/P gives the quirky variants the readers must convert."""
    w, h = (size, size) if isinstance(size, int) else size
    arr = patch_array(seed, max(w, h))[:h, :w]
    image = Image.fromarray(arr)
    if mode == "RGBA":
        image = image.convert("RGBA")
    elif mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def votes_dataset(root: Path, n: int = 6) -> Path:
    """An AtNorM-style votes CSV with ``n`` RGB patches beside it; returns the CSV path.

    Rows alternate normal/atypical; row 3 (line 4) has a split vote.
    """
    rows = []
    for i in range(n):
        name = f"fig{i}.png"
        write_png(root / name, seed=i)
        atypical = i % 2 == 1
        label = "Atypical" if atypical else "normal"
        votes = [label, label, ""] if i != 2 else ["Normal", "ATYPICAL", "normal"]
        rows.append([name, *votes, label, f"case{i // 2}", "Scanner A" if i < 3 else "Scanner B"])
    return write_csv(root / "votes.csv", ["Filename", "Expert_1", "Expert_2", "Expert_3", "Majority", "Case",
                                          "scanner"], rows)


def midog25_rows(n: int, start: int = 1) -> list[dict[str, str]]:
    rows = []
    tumors = ["human breast cancer", "canine lymphoma", "canine lung cancer"]
    for i in range(start, start + n):
        atypical = i % 4 == 0
        rows.append({
            "image_id": f"{i}.png", "filename": f"{100 + i % 5:03d}.tiff", "coordinateX": str(10 * i),
            "coordinateY": str(20 * i), "Tumor": tumors[i % 3], "Scanner": "Hamamatsu XR",
            "Origin": "UMC Utrecht", "Species": "Human" if i % 3 == 0 else "Canine",
            "expert1": "AMF" if atypical else "NMF", "expert2": "AMF" if atypical else "NMF", "expert3": "",
            "majority": "AMF" if atypical else "NMF",
        })
    return rows


def write_midog25(root: Path, rows: Sequence[dict[str, str]], images: bool = True,
                  name: str = "labels.csv") -> Path:
    """A MIDOG25-layout folder: the CSV plus ``images/<image_id>`` PNGs; returns the CSV path."""
    if images:
        for i, row in enumerate(rows):
            if not (root / "images" / row["image_id"]).exists():
                write_png(root / "images" / row["image_id"], seed=1000 + i)
    return write_csv(root / name, MIDOG25_COLUMNS, [[row[c] for c in MIDOG25_COLUMNS] for row in rows])


