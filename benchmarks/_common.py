"""Shared by every benchmark: where the real data is, and one JSON result file per benchmark.

A result records what was measured (``figures``), how (``command``), on which code (``commit``) and on
which machine, so that numbers from different runs can be compared honestly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


def shared_data_dir() -> Path:
    """``MITOTYPE_SHARED_DATA``, default ``<repo>/../shared/data`` (as in ``tests/conftest.py``)."""
    return Path(os.environ.get("MITOTYPE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options that name an AMi-Br training recipe, shared by the scripts that train or re-read LODO folds
    (a script that re-reads folds must be given the options the run had)."""
    parser.add_argument("--preset", default="full-cpu")
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, as in mitotype train (e.g. model.input_size=224)")


def run_overrides(args: argparse.Namespace) -> list[str]:
    """The configuration overrides of :func:`add_run_options`: AMi-Br from the shared data, the seed, the epochs
    when given, then every ``--set``."""
    overrides = [f"data.path={shared_data_dir() / 'amibr'}", f"seed={args.seed}"]
    if args.epochs:
        overrides.append(f"optim.epochs={args.epochs}")
    return overrides + args.overrides


def run_script(main: Callable[[], int]) -> int:
    """Run a benchmark's ``main``: a user mistake the library reports (a bad ``--set``, an unreadable path) ends
    in one line ``error: ...`` and exit status 2, as in the ``mitotype`` command, not in a traceback."""
    from mitotype.errors import MitotypeError, describe_os_error

    try:
        return main()
    except MitotypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2


def finished_lodo_folds(work: Path) -> list[Path]:
    """The finished fold folders of an ``amibr_lodo.py`` ``--work`` folder (``cv/folds/*/predictions.json``,
    ``run_cv``'s mark), checked before a script that re-reads them loads any data."""
    if not work.is_dir():
        raise SystemExit(f"error: {work}: no such folder (give the --work folder of benchmarks/amibr_lodo.py)")
    done = sorted(path.parent for path in (work / "cv" / "folds").glob("*/predictions.json"))
    if not done:
        raise SystemExit(f"error: {work}: no finished leave-one-domain-out fold (no cv/folds/*/predictions.json); "
                         "give the --work folder of a benchmarks/amibr_lodo.py run")
    return done


def command_line() -> str:
    """The command that ran this benchmark, relative to the repository root, quoted so it can be run again
    (a fold name such as ``"Aperio CS2"`` stays one argument)."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO_ROOT))
    except ValueError:
        script_text = str(script)
    return shlex.join(["python", script_text, *sys.argv[1:]])


def combined_command(before: str, command: str) -> str:
    """The commands behind a results file that runs were added to: ``before && command``, each once."""
    return before if command in before.split(" && ") else f"{before} && {command}"


def write_result(name: str, command: str, figures: dict[str, Any],
                 extra: dict[str, Any] | None = None, path: Path | None = None) -> Path:
    """Write ``benchmarks/results/<name>.json`` (or ``path``) atomically and return its path; the commit, the
    machine and the software versions come from :mod:`mitotype.provenance`, as beside every experiment's result."""
    from mitotype import provenance
    from mitotype.ioutils import atomic_write_text

    result: dict[str, Any] = {
        "benchmark": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": provenance.git_commit(REPO_ROOT),
        "machine": provenance.machine(),
        "software": provenance.versions(),
        "command": command,
        "figures": figures,
    }
    if extra:
        result["extra"] = extra
    path = Path(path) if path is not None else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    return path


T = TypeVar("T")


def alternate(measurements: Mapping[str, Callable[[], T]], rounds: int) -> dict[str, list[T]]:
    """Run every measurement once per round, rotating the order each round, and return each one's
    results in round order. Contenders measured side by side see the same background load (other
    processes on the machine), so their ratios hold even when absolute figures drift."""
    names = list(measurements)
    results: dict[str, list[T]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(measurements[name]())
    return results


def ratio(numerator: float, denominator: float, digits: int = 3) -> float | None:
    """``numerator / denominator`` rounded, or ``None`` when the denominator is not positive."""
    return round(numerator / denominator, digits) if denominator > 0 else None


def median_ratio(numerators: Sequence[float], denominators: Sequence[float], digits: int = 3) -> float | None:
    """Median over rounds of the per-round ratio (each pair measured side by side in one round)."""
    pairs = [n / d for n, d in zip(numerators, denominators) if d > 0]
    return round(statistics.median(pairs), digits) if pairs else None


def register_tiny_vit(size: int, patch: int = 16) -> str:
    """Register (idempotently) ``tiny-vit-reg4`` re-shaped for ``size`` px inputs and return its name.

    The registry's ``tiny-vit-reg4`` is fixed at 56 px (patch 14, ``dynamic_img_size`` off). This keeps
    everything else of it — timm's ``vit_giant_patch14_reg4_dinov2`` class with H-optimus-0's module
    names (so the default LoRA targets apply), 4 register tokens, width 32, depth 2, 2 heads, random
    weights — and sets ``img_size=size`` and ``patch_size=patch``: (size / patch)^2 patch tokens,
    64 at 128 px and 196 at 224 px with 16 px patches.
    """
    from mitotype.models.registry import get_backbone_spec, register_backbone

    if size % patch:
        raise ValueError(f"size {size} is not a multiple of the patch size {patch}")
    base = get_backbone_spec("tiny-vit-reg4")
    name = f"bench-tiny-vit-p{patch}-{size}"
    spec = dataclasses.replace(
        base,
        name=name,
        timm_kwargs={**base.timm_kwargs, "img_size": size, "patch_size": patch},
        input_size=size,
        license=f"random weights; tiny-vit-reg4 with {patch} px patches at {size} px",
    )
    register_backbone(spec, overwrite=True)
    return name


def set_omp_wait_policy(policy: str) -> str:
    """Set ``OMP_WAIT_POLICY`` before torch is imported and return what is in force.

    ``"passive"``: idle OpenMP threads sleep. With torch's default (spinning), a process whose 2 intra-op
    threads share 2 cores with other busy processes (other runs, DataLoader workers) can be slowed
    tens of times on small ops, by how much depending on the neighbours; passive waiting turns that
    into a plain fair share. ``"default"`` leaves the environment alone.
    """
    if "torch" in sys.modules:
        raise RuntimeError("set_omp_wait_policy must run before torch is imported")
    if policy == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    elif policy != "default":
        raise ValueError(f"unknown OpenMP wait policy {policy!r}")
    return os.environ.get("OMP_WAIT_POLICY", "default (unset)")


def load_average() -> float | None:
    """The 1-minute load average (other processes compete for the CPU), or ``None`` where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def dihedral_np(images: Any, k: int) -> Any:
    """``augment.dihedral`` on N x H x W x 3 numpy arrays (a horizontal flip when ``k >= 4``, then ``k % 4``
    counter-clockwise quarter turns): the looped TTA's input, made on the host as a naive implementation
    would."""
    import numpy as np

    if k >= 4:
        images = images[:, :, ::-1]
    return np.ascontiguousarray(np.rot90(images, k % 4, axes=(1, 2)))


def run_child(cmd: list[str], env: dict[str, str], identity: dict[str, Any]) -> dict[str, Any]:
    """Run a benchmark's child process, passing its output on line by line as it comes (a run's per-epoch
    log is a sign of life, not something to read 20 minutes later). Its ``RESULT {json}`` line as a dict,
    or ``identity`` with ``failed`` (why: exit status or signal, and its last error line) and ``when``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read() if proc.stderr else ""), daemon=True)
    reader.start()
    result = None
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.startswith("RESULT "):
            result = line
    code = proc.wait()
    reader.join()
    if code == 0 and result is not None:
        return json.loads(result[7:])
    sys.stderr.write("".join(errors))
    why = (f"killed by signal {-code}" if code < 0 else f"exit status {code}") if code else "no RESULT line"
    last = ("".join(errors).strip().splitlines() or [""])[-1].strip()
    return {**identity, "failed": why + (f" ({last[:300]})" if last else ""),
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
