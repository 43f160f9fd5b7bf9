"""Where a result came from: the code's commit, the software versions and the machine, recorded beside every
result (cross-validation, ablation and hold-out results, evaluations, and ``benchmarks/`` via ``write_result``)
so that figures from different runs can be compared honestly.

Versions are read from the installed packages' metadata (nothing heavy is imported); the commit from
``$MITOTYPE_COMMIT`` when set, else from git when the package runs from a checkout.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from mitotype import __version__

SOURCE_ROOT = Path(__file__).resolve().parents[2]
"""The checkout the package runs from, when it runs from one (``src/mitotype`` -> the repository)."""

PACKAGES = ("mitotype", "torch", "timm", "peft")
"""The packages whose versions decide a result."""


def git_commit(root: str | Path | None = None) -> str:
    """``$MITOTYPE_COMMIT`` when set (whoever copied the tree to another machine knows its commit better than
    the copy's git metadata, which may be stale), else ``git rev-parse HEAD`` in ``root`` (default: the
    package's checkout) with ``+dirty`` when tracked files changed, else ``"uncommitted"``."""
    given = os.environ.get("MITOTYPE_COMMIT")
    if given:
        return f"{given} (from MITOTYPE_COMMIT)"
    where = Path(root) if root is not None else SOURCE_ROOT
    if root is None and not (where / ".git").exists():
        return "uncommitted"  # an installed package: no checkout to ask (nor an unrelated one above it)
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "uncommitted"
    return f"{head}+dirty" if dirty else head


def versions() -> dict[str, str | None]:
    """The version of each of :data:`PACKAGES` (``None`` when one is not installed) and Python's; mitotype's is
    the running code's own."""
    # mitotype's own: an editable install's metadata may describe another checkout
    out: dict[str, str | None] = {"python": platform.python_version(), "mitotype": __version__}
    for name in PACKAGES[1:]:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    """The platform, Python, processor and the CPUs this process may use."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    return info


def cuda_device() -> str | None:
    """The first CUDA device's name when torch is loaded and sees one (torch is not imported for this)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return str(torch.cuda.get_device_name(0))


def environment(root: str | Path | None = None) -> dict[str, Any]:
    """Everything above in one mapping: versions, commit, machine, CUDA device (stored beside every result)."""
    return {**versions(), "commit": git_commit(root), **machine(), "cuda": cuda_device()}


__all__ = ["PACKAGES", "SOURCE_ROOT", "cuda_device", "environment", "git_commit", "machine", "versions"]
