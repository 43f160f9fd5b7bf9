"""Decode-once patch store: every figure of a dataset as one uint8 ``N x size x size x 3`` array on disk.

Training reads the same few thousand small PNGs every epoch; decoding them is most of the data time.
The store decodes once into a ``.npy`` file opened as a memory map (``np.lib.format.open_memmap``) and
keeps a small JSON manifest beside it. It is keyed by a hash of the inputs' *content* (the bytes of
every image file, crop coordinates, uids and order, size and decode policy), so an edited image, a
relabelled-but-moved file or another policy gets a new store, while re-reading the same data finds the
old one. A store is written into a temporary folder and renamed into place, so a crash never leaves a
half-written store under a valid key; processes that want the same missing store at once (torchrun ranks,
parallel benchmark runs) take a lock, so one builds and the others wait, then open it.

The store's whole size is reserved on disk before any pixel is decoded (``posix_fallocate``): a memory map
written on a full disk would otherwise kill the process with SIGBUS, where a reservation fails as an
ordinary "No space left on device" naming the cache. A store whose build was killed leaves a temporary
folder that the next build of the same store, or any build by a later process, removes.

Layout: ``<cache_dir>/<key[:32]>/images.npy`` + ``manifest.json``; locks in ``<cache_dir>/.locks/``.
Default ``cache_dir``: ``<cache root>/patches`` (:func:`mitotype.paths.cache_root`: ``$MITOTYPE_CACHE``, else
``$XDG_CACHE_HOME/mitotype``, else ``~/.cache/mitotype``, else a folder in the system's temporary folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mitotype.data.patches import (
    DEFAULT_SIZE_POLICY,
    PATCH_SIZE,
    check_size_policy,
    decode_patches,
    default_workers,
    file_digest,
)
from mitotype.data.records import FigureRecord
from mitotype.errors import DataError, PathError, describe_os_error
from mitotype.ioutils import remove_stale, reserve_space, writer_tag
from mitotype.paths import cache_root

STORE_VERSION = 1
IMAGES_FILE = "images.npy"
MANIFEST_FILE = "manifest.json"
_TMP_PREFIX = ".tmp-"


def default_cache_dir() -> Path:
    """``<cache root>/patches`` (:func:`mitotype.paths.cache_root`)."""
    return cache_root() / "patches"


def content_key(records: Sequence[FigureRecord], *, size: int = PATCH_SIZE, policy: str = DEFAULT_SIZE_POLICY,
                workers: int | None = None) -> str:
    """SHA-256 over the store version, size, policy and, per record in order, uid, file content hash and
    crop centre. Each distinct file is hashed once (blake2b over its bytes, in a thread pool)."""
    paths = sorted({str(r.image) for r in records})

    def digest(path: str) -> str:
        try:
            return file_digest(path)
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None

    with ThreadPoolExecutor(workers or default_workers()) as pool:
        digests = dict(zip(paths, pool.map(digest, paths, chunksize=64)))
    h = hashlib.sha256()
    h.update(json.dumps({"version": STORE_VERSION, "size": size, "policy": policy}).encode())
    for r in records:  # surrogateescape: a uid from a file name that is not UTF-8 keys by its bytes
        h.update(f"\n{r.uid}\t{digests[str(r.image)]}\t{r.x}\t{r.y}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


@dataclass
class PatchStore:
    """Every record's pixels, rows in the order of ``records``; ``built`` says whether this call decoded."""

    images: np.ndarray
    """``N x size x size x 3`` uint8, a read-only memory map."""
    records: list[FigureRecord]
    key: str
    path: Path
    """The store's folder (holding ``images.npy`` and ``manifest.json``)."""
    built: bool
    seconds: float = 0.0
    """Time this call took (hashing plus decoding or opening)."""

    def __len__(self) -> int:
        return len(self.records)

    @property
    def manifest(self) -> dict:
        return json.loads((self.path / MANIFEST_FILE).read_text())

    @classmethod
    def open_or_build(cls, records: Sequence[FigureRecord], cache_dir: str | Path | None = None, *,
                      size: int = PATCH_SIZE, policy: str = DEFAULT_SIZE_POLICY,
                      workers: int | None = None) -> PatchStore:
        """The store for ``records``: opened if a valid one with the same content key exists, else built."""
        start = time.perf_counter()
        records = list(records)
        if not records:
            raise DataError("no records to store")
        check_size_policy(policy)
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        key = content_key(records, size=size, policy=policy, workers=workers)
        final = cache / key[:32]
        images = _open(final, key, records, size)
        built = False
        if images is None:
            try:
                with _build_lock(cache / ".locks" / final.name):
                    images = _open(final, key, records, size)  # another process may have built it meanwhile
                    if images is None:
                        _build(final, key, records, size=size, policy=policy, workers=workers)
                        built = True
                        images = _open(final, key, records, size)
            except OSError as exc:
                raise cache_error(exc, cache) from None
            if images is None:
                raise DataError(f"{final}: patch store could not be read back after building it")
        return cls(images, records, key, final, built=built, seconds=time.perf_counter() - start)


def cache_error(exc: OSError, cache: Path) -> PathError:
    """An operating-system error while writing the patch cache, as one line that says it is the cache and
    how to move it (the path alone, ``~/.cache/...: Permission denied``, does not say what to change)."""
    return PathError(f"{describe_os_error(exc, cache)} (the patch cache: set MITOTYPE_CACHE to a writable folder "
                     "with room for it)")


@contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX ``flock``) held while a store is checked and built. The lock file
    stays: removing it would let a late process lock a new file while a waiter holds the old one."""
    try:
        # platform: fcntl exists on POSIX only
        import fcntl
    except ImportError:  # no flock (Windows): concurrent builders each build; the rename keeps stores whole
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open(folder: Path, key: str, records: Sequence[FigureRecord], size: int) -> np.ndarray | None:
    """The memmap of a valid store in ``folder``; ``None`` when absent or not matching (then rebuilt)."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        if (manifest.get("version") != STORE_VERSION or manifest.get("key") != key
                or manifest.get("count") != len(records) or manifest.get("uids") != [r.uid for r in records]):
            return None
        images = np.load(folder / IMAGES_FILE, mmap_mode="r")
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    if images.shape != (len(records), size, size, 3) or images.dtype != np.uint8:
        return None
    return images


def _build(final: Path, key: str, records: Sequence[FigureRecord], *, size: int, policy: str,
           workers: int | None) -> None:
    start = time.perf_counter()
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final.parent, _TMP_PREFIX)  # stores whose build was killed
    tmp = final.parent / f"{_TMP_PREFIX}{writer_tag()}.{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        shape = (len(records), size, size, 3)
        images = np.lib.format.open_memmap(tmp / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=shape)
        reserve_space(tmp / IMAGES_FILE)  # a full disk fails here, as an OSError, not as SIGBUS below
        decode_patches(records, images, size=size, policy=policy, workers=workers)
        images.flush()
        del images
        manifest = {
            "version": STORE_VERSION,
            "key": key,
            "count": len(records),
            "size": size,
            "policy": policy,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(time.perf_counter() - start, 3),
            "uids": [r.uid for r in records],
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest))
        if final.exists() and _open(final, key, records, size) is not None:
            return  # a concurrent builder finished the same store first: keep theirs
        if final.exists():  # a stale or broken store under this key: move it aside, then replace
            stale = final.parent / f".stale-{final.name}-{uuid.uuid4().hex[:8]}"
            try:
                os.replace(final, stale)
            except OSError:
                stale = None
            if stale is not None:
                shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / MANIFEST_FILE).is_file():  # not a concurrent builder's finished store
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
