"""The shared floor's writing (issue 35): links written through, streams written in place, several outputs
replaced as one set, the reason of a failed write kept, and what a killed run left removed by the next one."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import mitotype
from mitotype.errors import PathError, printable
from mitotype.ioutils import (
    atomic_save_safetensors,
    atomic_torch_save,
    atomic_write_text,
    output_target,
    replaced_together,
    write_json_atomic,
    writer_tag,
)
from mitotype.paths import cache_root

REPO = Path(__file__).resolve().parents[1]
SRC = Path(mitotype.__file__).resolve().parents[1]
"""The package under test (a subprocess imports the same one)."""


def _dead_tag() -> str:
    """A writer tag of this host whose process is gone (a child that has exited)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    return f"{writer_tag().split('-')[0]}-{child.stdout.strip()}"


# --------------------------------------------------------------------------- links and streams


def test_a_link_is_written_through_and_stays_a_link(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real.name)
    write_json_atomic(link, {"new": 1})
    assert link.is_symlink() and os.readlink(link) == "real.json"
    assert json.loads(real.read_text()) == {"new": 1}


def test_a_dangling_link_creates_its_target(tmp_path):
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "later.csv")
    atomic_write_text(link, "id\n")
    assert link.is_symlink() and (tmp_path / "later.csv").read_text() == "id\n"


def test_a_fifo_is_written_in_place_as_a_stream(tmp_path):
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_json_atomic(fifo, {"a": 1})
    reader.join(timeout=30)
    assert json.loads(got[0]) == {"a": 1}
    assert output_target(fifo) == (fifo, True) and output_target("/dev/stdout")[1]
    assert not fifo.is_file() and fifo.exists()  # still the FIFO, not replaced by a file


def test_a_link_to_stdout_writes_to_the_pipe(tmp_path):
    """``--json /dev/stdout`` without touching /dev: a link to this process's standard output (a pipe)."""
    code = ("import sys, os; from mitotype.ioutils import write_json_atomic; "
            "os.symlink('/proc/self/fd/1', sys.argv[1]); write_json_atomic(sys.argv[1], {'x': 1}); "
            "print(os.path.islink(sys.argv[1]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "metrics.json")], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "True" and json.loads("".join(done.stdout.splitlines()[:-1])) == {"x": 1}


# --------------------------------------------------------------------------- a failed write keeps its reason


def _run_with_file_size_limit(code: str, tmp_path: Path, limit: int = 50_000) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(REPO)]),
           "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))


def test_torch_save_past_a_file_size_limit_says_file_too_large(tmp_path):
    """torch.save raises a RuntimeError ("unexpected pos") that has lost the reason; the write keeps it."""
    done = _run_with_file_size_limit(
        "import torch\nfrom mitotype.ioutils import atomic_torch_save\nfrom mitotype.errors import PathError\n"
        "try:\n    atomic_torch_save({'w': torch.zeros(100_000)}, 'state.pt')\n"
        "except PathError as exc:\n    print(exc)\n", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "state.pt: File too large"
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary file left


def test_safetensors_past_a_file_size_limit_says_file_too_large(tmp_path):
    done = _run_with_file_size_limit(
        "import torch\nfrom mitotype.ioutils import atomic_save_safetensors\nfrom mitotype.errors import PathError\n"
        "try:\n    atomic_save_safetensors({'w': torch.zeros(100_000)}, 'model.safetensors')\n"
        "except PathError as exc:\n    print(exc)\n", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "model.safetensors: File too large"
    assert list(tmp_path.iterdir()) == []


def test_torch_save_and_safetensors_still_write(tmp_path):
    import torch
    from safetensors.torch import load_file

    atomic_torch_save({"w": torch.arange(5)}, tmp_path / "a.pt")
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["w"], torch.arange(5))
    atomic_save_safetensors({"w": torch.arange(3)}, tmp_path / "b.safetensors")
    assert torch.equal(load_file(tmp_path / "b.safetensors")["w"], torch.arange(3))


# --------------------------------------------------------------------------- several files as one


def _set(folder: Path, text: str) -> list[Path]:
    paths = [folder / name for name in ("results.json", "predictions.csv", "report.html")]
    for path in paths:
        path.write_text(f"{text} {path.name}")
    return paths


def test_a_set_is_replaced_together(tmp_path):
    paths = _set(tmp_path, "old")
    with replaced_together(paths) as staged:
        for path, stage in zip(paths, staged):
            assert stage.parent == path.parent and stage.name.startswith(".")
            atomic_write_text(stage, f"new {path.name}")
        assert all(p.read_text().startswith("old") for p in paths)  # nothing moves before the set is done
    assert [p.read_text() for p in paths] == [f"new {p.name}" for p in paths]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_a_full_disk_partway_leaves_the_old_set(tmp_path):
    paths = _set(tmp_path, "old")
    with pytest.raises(PathError, match=r"/predictions\.csv: No space left on device$"), \
            replaced_together(paths) as staged:
        atomic_write_text(staged[0], "new results")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(staged[1]))
    assert [p.read_text() for p in paths] == [f"old {p.name}" for p in paths]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_a_signal_while_the_set_moves_waits_until_it_is_complete(tmp_path, monkeypatch):
    paths = _set(tmp_path, "old")
    real_replace = os.replace
    moved: list[str] = []

    def replace_then_signal(src, dst):  # SIGTERM arrives right after the first file moved
        real_replace(src, dst)
        moved.append(str(dst))
        if len(moved) == 1:
            signal.raise_signal(signal.SIGTERM)

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(SystemExit), replaced_together(paths) as staged:
            for path, stage in zip(paths, staged):
                atomic_write_text(stage, f"new {path.name}")
            monkeypatch.setattr(os, "replace", replace_then_signal)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert [p.read_text() for p in paths] == [f"new {p.name}" for p in paths]  # the set, then the signal


def test_a_run_killed_among_the_moves_is_completed_by_the_next(tmp_path):
    """A journal lists every move before the first: the next write to the folder finishes a killed commit."""
    paths = _set(tmp_path, "old")
    tag = _dead_tag()
    staged = [p.with_name(f".{p.name}.{tag}.x.staged") for p in paths]
    for p, s in zip(paths, staged):
        s.write_text(f"new {p.name}")
    (tmp_path / f".mitotype-commit.{tag}.x.json").write_text(json.dumps([[str(s), str(p)] for s, p in
                                                                          zip(staged, paths)]))
    os.replace(staged[0], paths[0])  # killed after the first move
    with replaced_together([tmp_path / "other.txt"]) as (other,):
        other.write_text("x")
    assert [p.read_text() for p in paths] == [f"new {p.name}" for p in paths]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(p.name for p in paths), "other.txt"])


def test_what_a_killed_run_left_is_removed_and_a_live_writer_s_is_kept(tmp_path):
    target = tmp_path / "results.json"
    dead, live = _dead_tag(), writer_tag()
    leftovers = [tmp_path / f".results.json.{dead}.abc.tmp", tmp_path / f".results.json.{dead}.abc.staged"]
    kept = [tmp_path / f".results.json.{live}.abc.tmp", tmp_path / ".results.json.0000ff-1.abc.tmp"]  # other host
    for path in [*leftovers, *kept]:
        path.write_text("half")
    with replaced_together([target]) as (staged,):
        write_json_atomic(staged, {"ok": True})
    assert json.loads(target.read_text()) == {"ok": True}
    assert not any(p.exists() for p in leftovers) and all(p.exists() for p in kept)


# --------------------------------------------------------------------------- names and the cache folder


def test_a_name_that_is_not_utf8_is_written_escaped():
    assert printable(os.fsdecode(b"caf\xe9.png")) == "caf\\xe9.png"
    assert printable("café.png") == "café.png"


@pytest.mark.parametrize("home", ["", None, "/nonexistent-home-of-a-service", "relative/home", "/"])
def test_a_missing_or_empty_home_puts_the_cache_in_the_temp_folder(monkeypatch, home, tmp_path):
    import tempfile

    for var in ("MITOTYPE_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    if home is None:
        monkeypatch.delenv("HOME", raising=False)
        monkeypatch.setattr("pwd.getpwuid", lambda _uid: type("E", (), {"pw_dir": "/nonexistent"})())
    else:
        monkeypatch.setenv("HOME", home)
    root = cache_root()
    assert root.parent == Path(tempfile.gettempdir()) and root.name.startswith("mitotype-cache-")
    from mitotype.data.store import default_cache_dir
    from mitotype.models.embedding_cache import default_embedding_dir

    assert default_cache_dir().parent == root and default_embedding_dir().parent == root


def test_the_cache_follows_mitotype_cache_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("MITOTYPE_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("MITOTYPE_CACHE")
    assert cache_root() == tmp_path / "xdg" / "mitotype"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == tmp_path / ".cache" / "mitotype"
