"""A run folder that protects and describes itself: its state, a lock while it trains, and the rules
for reusing it.

``run.json`` records the status (``running``, ``finished``, ``failed``), the epochs done out of the
epochs planned, the command and the process; it is rewritten atomically at the start, after every epoch
and at the end. While a run trains, its process holds an exclusive lock on ``.mitotype-run.lock``, so a
second ``train`` into the same folder stops at once instead of interleaving files, and a reader can tell
a live run from one whose process died (status ``running`` but nobody holds the lock).

Folders written before ``run.json`` existed count as finished, except when they still hold the resume
state of a model that never got its final (TTA) threshold: that is a run stopped half-way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mitotype import __version__
from mitotype.errors import MitotypeError
from mitotype.ioutils import write_json_atomic
from mitotype.paths import check_folder_creatable

STATE_FILE = "run.json"
LOCK_FILE = ".mitotype-run.lock"
RESUME_FILE = "last_state.pt"
MODEL_FILE = "model.safetensors"
RUN_FILES = (STATE_FILE, MODEL_FILE, "model.json", RESUME_FILE, "metrics.jsonl", "config.yaml")
"""Files a training run writes into its folder (what ``--overwrite`` removes)."""
RUN_DIRS = ("tensorboard",)

__all__ = [
    "RunState",
    "RunStatus",
    "RunUnfinishedError",
    "describe_state",
    "prepare_train_folder",
    "read_run_state",
    "record_command",
    "require_finished",
    "run_state_of",
    "training_run",
]


_command_line: list[str] | None = None
"""The command being run, as the user typed it (set by the CLI; ``sys.argv`` otherwise)."""


def record_command(argv: Sequence[str]) -> None:
    """Remember the command line that ``run.json`` records (called by the CLI entry point)."""
    global _command_line
    _command_line = ["mitotype", *argv]


class RunUnfinishedError(MitotypeError):
    """A model folder whose training did not finish was given where a finished model is needed."""


@dataclass
class RunState:
    """What ``run.json`` holds."""

    status: str
    """``running``, ``finished`` or ``failed``."""
    epochs_done: int
    epochs_total: int
    command: list[str] = field(default_factory=list)
    pid: int = 0
    host: str = ""
    started: str = ""
    updated: str = ""
    error: str | None = None
    mitotype_version: str = __version__


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_run_state(folder: str | Path) -> RunState | None:
    """The folder's ``run.json``, or ``None`` when it has none (a folder of an earlier version)."""
    path = Path(folder) / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MitotypeError(f"{path}: unreadable run state ({type(exc).__name__}); "
                            "repair or delete it (it is rewritten by `mitotype train`)") from None
    if not isinstance(data, dict) or data.get("status") not in ("running", "finished", "failed"):
        raise MitotypeError(f"{path}: not a mitotype run state (no valid 'status')")
    known = {k: v for k, v in data.items() if k in RunState.__dataclass_fields__}
    try:
        return RunState(**known)
    except TypeError as exc:
        raise MitotypeError(f"{path}: not a mitotype run state ({exc})") from None


# --------------------------------------------------------------------------- the lock


class _FolderLock:
    """An exclusive, non-blocking ``flock`` on the folder's lock file; released when the process ends,
    however it ends (the kernel drops it), so a killed run never leaves a stale lock."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        try:
            import fcntl
        except ImportError:  # no flock on this platform: no protection, but no failure either
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _locked_by_other(folder: Path) -> bool:
    """Whether another process holds the folder's training lock right now."""
    if not (folder / LOCK_FILE).is_file():
        return False
    probe = _FolderLock(folder)
    try:
        return not probe.acquire()
    except OSError:
        return False
    finally:
        probe.release()


# --------------------------------------------------------------------------- state of a folder


def run_state_of(folder: str | Path) -> tuple[str, str]:
    """``(status, description)`` of a model folder: ``finished``, ``running`` (a live process trains
    it), ``interrupted`` (its process is gone) or ``failed``."""
    folder = Path(folder)
    state = read_run_state(folder)
    if state is None:
        return _legacy_state(folder)
    done = f"{state.epochs_done} of {state.epochs_total} epochs done"
    if state.status == "finished":
        return "finished", f"finished ({done})"
    if state.status == "failed":
        why = f": {state.error}" if state.error else ""
        return "failed", f"failed after {done}{why}"
    if _locked_by_other(folder):
        return "running", f"still training ({done}, process {state.pid} on {state.host or 'this machine'})"
    return "interrupted", f"interrupted ({done}; the process that trained it is gone)"


def _legacy_state(folder: Path) -> tuple[str, str]:
    """A folder without ``run.json``: finished, unless its model never got the final TTA threshold while
    resume state sits beside it (a run of an earlier version stopped half-way)."""
    meta_path = folder / "model.json"
    if (folder / RESUME_FILE).is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            meta = {}
        if isinstance(meta, dict) and meta.get("threshold_tta") is None:
            return "interrupted", "interrupted (written by an earlier version: no final threshold yet)"
    return "finished", "finished (no run.json: written by an earlier version)"


def describe_state(folder: str | Path) -> str:
    return run_state_of(folder)[1]


def require_finished(dirs: Sequence[str | Path], allow_unfinished: bool = False) -> list[str]:
    """Refuse model folders whose training did not finish; returns notes for the unfinished ones that
    ``allow_unfinished`` lets through (the caller says them)."""
    notes = []
    for d in dirs:
        status, text = run_state_of(d)
        if status == "finished":
            continue
        if allow_unfinished:
            notes.append(f"{d}: using an unfinished run ({text})")
            continue
        hint = ("wait for it to finish" if status == "running"
                else "finish it with `mitotype train --resume --out <folder> ...`")
        raise RunUnfinishedError(f"{d}: not a finished model: the run {text}; {hint}, "
                                 "or pass --allow-unfinished to use its best epoch so far")
    return notes


# --------------------------------------------------------------------------- training into a folder


def _holds_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in RUN_FILES)


def prepare_train_folder(out: str | Path, resume: bool, overwrite: bool) -> str | None:
    """Check the rules of ``mitotype train --out`` before any data is read.

    A folder holding a run is refused unless ``resume`` (continue it) or ``overwrite`` (its run files are
    removed here); ``resume`` needs a run to continue. Returns a note to show, if any.
    """
    out = Path(out)
    if resume and overwrite:
        raise MitotypeError("--resume and --overwrite exclude each other: continue the run or replace it")
    if out.exists() and not out.is_dir():
        raise MitotypeError(f"{out}: exists and is not a folder; --out names the run folder")
    check_folder_creatable(out)
    has_run = out.is_dir() and _holds_run(out)
    if has_run and _locked_by_other(out):
        raise MitotypeError(f"{out}: another process is training into this folder right now "
                            f"({describe_state(out)}); wait for it or choose another --out")
    if resume:
        if not has_run:
            raise MitotypeError(f"{out}: --resume, but this folder holds no run to continue "
                                "(no run.json or last_state.pt); drop --resume to start a new run")
        return None
    if not has_run:
        return None
    if not overwrite:
        raise MitotypeError(f"{out}: already holds a run ({describe_state(out)}); continue it with --resume, "
                            "replace it with --overwrite, or choose another --out")
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    for name in RUN_DIRS:
        shutil.rmtree(out / name, ignore_errors=True)
    return f"--overwrite: removed the previous run's files from {out}"


class RunStatus:
    """The ``run.json`` of a run in progress: its :class:`RunState`, rewritten after every epoch."""

    def __init__(self, folder: Path, epochs_total: int, command: list[str], epochs_done: int = 0,
                 enabled: bool = True) -> None:
        self.folder = folder
        self.enabled = enabled
        self.state = RunState(status="running", epochs_done=epochs_done, epochs_total=epochs_total,
                              command=command, pid=os.getpid(), host=socket.gethostname(),
                              started=_now(), updated=_now())
        self.complete = False

    def write(self) -> None:
        if self.enabled:
            self.state.updated = _now()
            write_json_atomic(self.folder / STATE_FILE, asdict(self.state))

    def epoch_done(self, epochs_done: int, stopped_early: bool = False) -> None:
        """Record a finished epoch; ``stopped_early`` (patience) counts as a complete run."""
        self.state.epochs_done = epochs_done
        self.complete = stopped_early or epochs_done >= self.state.epochs_total
        self.write()


@contextlib.contextmanager
def training_run(folder: str | Path, epochs_total: int, resume: bool = False,
                 command: Sequence[str] | None = None, enabled: bool = True) -> Iterator[RunStatus]:
    """Hold the folder's lock and keep ``run.json`` true while training runs inside the block.

    The status ends ``finished`` when every epoch ran (or early stopping ended the run), else ``failed``
    with the reason. A folder this call created is removed again when the run fails before its first
    epoch, so a mistake leaves no empty run folder behind. ``enabled=False`` (the non-zero ranks of a
    distributed run) writes nothing and takes no lock.
    """
    folder = Path(folder)
    command = list(command or _command_line or sys.argv)
    if not enabled:
        yield RunStatus(folder, epochs_total, command, enabled=False)
        return
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = _FolderLock(folder)
    if not lock.acquire():
        raise MitotypeError(f"{folder}: another process is training into this folder right now "
                            f"({describe_state(folder)}); wait for it or choose another folder")
    previous = read_run_state(folder) if resume else None
    status = RunStatus(folder, epochs_total, command,
                       epochs_done=previous.epochs_done if previous else 0)
    if previous and previous.started:
        status.state.started = previous.started
    try:
        status.write()
        yield status
    except BaseException as exc:
        if created and status.state.epochs_done == 0 and not resume:
            lock.release()
            shutil.rmtree(folder, ignore_errors=True)
        else:
            status.state.status = "failed"
            status.state.error = _one_line(exc)
            with contextlib.suppress(OSError):
                status.write()
        raise
    else:
        status.state.status = "finished" if status.complete else "failed"
        if not status.complete:
            status.state.error = (f"stopped after epoch {status.state.epochs_done} of {status.state.epochs_total}; "
                                  "continue with --resume")
        status.write()
    finally:
        lock.release()


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, SystemExit):
        return f"stopped (exit status {exc.code})"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300] if isinstance(exc, MitotypeError) else f"{type(exc).__name__}: {text[:300]}"


def state_dict(folder: str | Path) -> dict[str, Any] | None:
    """``run.json`` as a plain dict (for reports), ``None`` when absent."""
    state = read_run_state(folder)
    return None if state is None else asdict(state)
