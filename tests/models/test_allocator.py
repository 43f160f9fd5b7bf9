"""Freed CPU memory stays in the heap: a second large tensor reuses pages instead of faulting in new ones."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from mitotype.models.allocator import RETAIN_MEMORY_ENV

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning is glibc-only")

_PROBE = """
import ctypes, resource, numpy as np
from mitotype.models.allocator import retain_freed_memory

class MallInfo(ctypes.Structure):  # glibc's struct mallinfo; hblkhd = bytes held in mmapped blocks
    _fields_ = [(name, ctypes.c_int) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]

mallinfo = ctypes.CDLL("libc.so.6").mallinfo
mallinfo.restype = MallInfo
applied = retain_freed_memory()
for _ in range(3):  # allocate, touch and free 64 MiB; the last round shows the steady state
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.empty(64 << 20, np.uint8)
    block.fill(1)
    mapped = mallinfo().hblkhd
    del block
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(applied, mapped, faults, retain_freed_memory() == applied)
"""


def _probe(setting: str) -> tuple[str, int, int, str]:
    env = {**os.environ, RETAIN_MEMORY_ENV: setting}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    applied, mapped, faults, stable = out.stdout.split()
    return applied, int(mapped), int(faults), stable


def test_retained_heap_serves_large_blocks_and_reuses_their_pages() -> None:
    applied, mapped, faults, stable = _probe("1")
    assert applied == "True" and stable == "True"
    assert mapped < 1 << 20  # the 64 MiB block came from the heap, not from its own mmap
    assert faults < 1000  # 64 MiB is 16384 pages: none faulted in again after the first round


def test_opt_out_leaves_the_system_allocator() -> None:
    applied, mapped, _, _ = _probe("0")
    assert applied == "False"
    assert mapped >= 64 << 20  # glibc maps a block this large on its own and unmaps it on free
