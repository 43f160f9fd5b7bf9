"""Shared by every benchmark: where the real data is, and one JSON result file per benchmark.

A result records what was measured (``figures``), how (``command``), on which code (``commit``) and on
which machine, so that numbers from different runs can be compared honestly.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


def shared_data_dir() -> Path:
    """``MITOTYPE_SHARED_DATA``, default ``<repo>/../shared/data`` (as in ``tests/conftest.py``)."""
    return Path(os.environ.get("MITOTYPE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def git_commit() -> str:
    """``git rev-parse HEAD`` (with ``+dirty`` when the tree has changes), or ``"uncommitted"``."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "uncommitted"
    return f"{head}+dirty" if dirty else head


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    return info


def command_line() -> str:
    """The command that ran this benchmark, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO_ROOT))
    except ValueError:
        script_text = str(script)
    return " ".join(["python", script_text, *sys.argv[1:]])


def write_result(name: str, command: str, figures: dict[str, Any],
                 extra: dict[str, Any] | None = None) -> Path:
    """Write ``benchmarks/results/<name>.json`` atomically and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine(),
        "command": command,
        "figures": figures,
    }
    if extra:
        result["extra"] = extra
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    return path
