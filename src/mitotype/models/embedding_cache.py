"""Embeddings of a frozen backbone, computed once per figure and view and reused across epochs, folds, heads
and seeds: the usual first look at a new foundation model (a linear or MLP probe) then costs one backbone
pass over the data instead of one per epoch and fold.

A frozen backbone stays in eval mode, so a figure's embedding is a fixed function of its pixels, the
backbone's weights, the input size and the numerics. The cache is keyed by all of them: a digest of the
figures' pixels, the backbone (registry name, architecture, a digest of every weight and buffer), the input
size and the autocast dtype, so any change gives a new entry. Layout, in the style of the patch store:
``<root>/<key[:32]>/`` holds ``embeddings.npy`` (N x 8 x E float32, view ``v`` = dihedral view ``v`` of
:func:`~mitotype.models.views.dihedral`), ``done.npy`` (N x 8 bool: which entries are computed) and
``manifest.json`` (every key part, for people). View 0 (the figure as it is) is computed for every figure
at once; the other seven only for the figures that test-time augmentation asks for, when it asks.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mitotype.ioutils import reserve_space, write_json_atomic
from mitotype.models.device import to_float_batch
from mitotype.models.views import dihedral
from mitotype.paths import cache_root

CACHE_FORMAT = 1
N_VIEWS = 8
EMBEDDINGS_FILE = "embeddings.npy"
DONE_FILE = "done.npy"
MANIFEST_FILE = "manifest.json"

__all__ = ["EmbeddingTable", "default_embedding_dir", "pixels_digest"]


def default_embedding_dir() -> Path:
    """``<cache root>/embeddings`` (:func:`mitotype.paths.cache_root`)."""
    return cache_root() / "embeddings"


def pixels_digest(images: np.ndarray, chunk: int = 256) -> str:
    """BLAKE2b of every pixel, with the array's shape (reads a memory map in chunks)."""
    digest = hashlib.blake2b(str(tuple(images.shape)).encode(), digest_size=32)
    for start in range(0, len(images), chunk):
        digest.update(np.ascontiguousarray(images[start : start + chunk]).tobytes())
    return digest.hexdigest()


def _weights_digest(module: torch.nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=32)
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class EmbeddingTable:
    """The cached embeddings of one set of figures under one frozen backbone; computes what is missing."""

    def __init__(self, model: Any, images: np.ndarray, root: str | Path | None = None, *,
                 amp_dtype: torch.dtype | None = None, device: torch.device | str = "cpu",
                 batch_size: int = 64) -> None:
        self.model, self.images = model, images
        self.device, self.amp_dtype, self.batch_size = torch.device(device), amp_dtype, batch_size
        parts = {
            "format": CACHE_FORMAT, "pixels": pixels_digest(images), "backbone": model.spec.name,
            "architecture": model.spec.architecture, "weights": _weights_digest(model.backbone),
            "input_size": int(model.input_size), "pooling": model.spec.pooling,
            "autocast": str(amp_dtype) if amp_dtype is not None else "fp32",
        }
        stain_norm = getattr(model, "stain_norm", None)
        if stain_norm is not None:  # embeddings of normalised figures (absent when off: earlier keys hold)
            parts["stain_norm"] = stain_norm.digest()
        key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        self.folder = Path(root).expanduser() if root is not None else default_embedding_dir()
        self.folder = self.folder / key[:32]
        self.folder.mkdir(parents=True, exist_ok=True)
        self.computed = 0
        """Figure-views computed by this table (not found in the cache): what a caller reports."""
        manifest = self.folder / MANIFEST_FILE
        if not manifest.is_file():
            with torch.no_grad():
                dim = int(self._embed(np.arange(1), 0).shape[-1])
            np.lib.format.open_memmap(self.folder / EMBEDDINGS_FILE, mode="w+", dtype=np.float32,
                                      shape=(len(images), N_VIEWS, dim)).flush()
            reserve_space(self.folder / EMBEDDINGS_FILE)  # a full disk: an OSError now, not SIGBUS later
            np.save(self.folder / DONE_FILE, np.zeros((len(images), N_VIEWS), dtype=bool))
            write_json_atomic(manifest, {**parts, "key": key, "figures": len(images), "dim": dim,
                                         "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        self.table = np.load(self.folder / EMBEDDINGS_FILE, mmap_mode="r+")
        self.done = np.load(self.folder / DONE_FILE)

    @torch.no_grad()
    def _embed(self, idx: np.ndarray, view: int) -> torch.Tensor:
        x = dihedral(to_float_batch(self.images, idx, self.device), view)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            return self.model.embed(x).float()

    def get(self, idx: np.ndarray, views: range | list[int] = range(1)) -> np.ndarray:
        """Embeddings of the figures ``idx`` under ``views``: len(idx) x len(views) x E, computing (and
        keeping) what the cache lacks."""
        idx = np.asarray(idx, dtype=np.int64)
        missing_any = False
        for view in views:
            todo = np.unique(idx[~self.done[idx, view]])
            for start in range(0, len(todo), self.batch_size):
                part = todo[start : start + self.batch_size]
                self.table[part, view] = self._embed(part, view).cpu().numpy()
                self.done[part, view] = True
                self.computed += len(part)
                missing_any = True
        if missing_any:
            self.table.flush()
            tmp = self.folder / f".{DONE_FILE}.{os.getpid()}.tmp.npy"
            np.save(tmp, self.done)
            os.replace(tmp, self.folder / DONE_FILE)  # the mark follows the data it marks
        return np.asarray(self.table[idx][:, list(views)])
