"""Every kind of bad input x every command that reads it (issue 20): a user mistake ends in one line
``error: ...`` naming the file, a non-zero exit, no traceback, and nothing written.

The matrix is built from two tables. ``COMMANDS`` says, per command, which input kinds it reads (its
``slots``) and how its command line is made from one path per slot; ``CASES`` says, per input kind, how
to break an input. A new command inherits every check of the kinds it declares, and a new case runs
against every command reading that kind.
"""

from __future__ import annotations

import builtins
import csv
import errno
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import tifffile

import mitotype
from mitotype.cli.main import main
from mitotype.errors import MitotypeError
from mitotype.serving.challenge import STACK_SLOT
from tests.conftest import TINY_OVERRIDES, make_model_dir

STATE_FILE = "run.json"  # mitotype.runs.STATE_FILE (spelled out so the matrix also runs on older code)

# --------------------------------------------------------------------------- good inputs, one per kind


class Env:
    """Good inputs, made on demand in one test's folder."""

    def __init__(self, root: Path, synth_dir: Path, weights: Path) -> None:
        self.root = root
        self._synth = synth_dir
        self._weights = weights

    def dataset(self) -> Path:
        return Path(shutil.copytree(self._synth, self.root / "data"))

    def model(self) -> Path:
        return make_model_dir(self.root / "model")

    def stack(self) -> Path:
        path = self.root / "stack.tiff"
        rng = np.random.default_rng(0)
        tifffile.imwrite(path, rng.integers(0, 255, (3, 128, 128, 3), dtype=np.uint8), photometric="rgb")
        return path

    def weights(self) -> Path:
        return Path(shutil.copy(self._weights, self.root / "weights.safetensors"))

    def config(self) -> Path:
        path = self.root / "config.yaml"
        path.write_text("optim:\n  epochs: 1\n  lr: 0.001\n")
        return path

    def ground_truth(self) -> Path:
        path = self.root / "ground_truth.json"
        path.write_text(json.dumps([{"image": "s1.tiff", "labels": ["normal", "atypical"],
                                     "tumordomains": ["a", "a"]}]))
        return path

    def predictions(self) -> Path:
        folder = self.root / "outputs"
        folder.mkdir()
        (folder / "s1.json").write_text(json.dumps([{"class": "normal", "confidence": 0.2},
                                                    {"class": "atypical", "confidence": 0.9}]))
        return folder

    def wsi(self) -> Path:
        from tests.wsi_factory import background, write_pyramid

        image = background(640, 640, (64, 64, 576, 576))
        return write_pyramid(self.root / "slide.tif", image, mpp=0.25, levels=2, tile=128)

    def points(self) -> Path:
        from tests.wsi_factory import track1_json

        return track1_json(self.root / "slide.json", [(200.0, 200.0), (400.0, 300.0)], 0.25, [0.9, 0.9])

    def out_dir(self) -> Path:
        return self.root / "out"

    def out_file(self, suffix: str) -> Path:
        return self.root / f"out{suffix}"


# --------------------------------------------------------------------------- commands and their slots

TRAIN_SETS = [x for o in [*TINY_OVERRIDES, "optim.epochs=1"] for x in ("--set", o)]


@dataclass
class Command:
    """A command line from one path per slot; ``output`` is the slot it writes (must stay unwritten)."""

    slots: dict[str, str]
    """slot name -> input kind."""
    argv: Callable[[dict[str, Path]], list[str]]
    output: str | None = None
    out_suffix: str = ""
    names: dict[str, str] = field(default_factory=dict)
    """``kind/case`` -> what this command's error names instead of the case's own token."""


def _cache(p: dict[str, Path]) -> list[str]:
    return ["--set", f"data.cache_dir={p['_root'] / 'cache'}"]


COMMANDS: dict[str, Command] = {
    "data-inspect": Command({"data": "dataset"}, lambda p: ["data", "inspect", str(p["data"])]),
    "train": Command(
        {"data": "dataset", "config": "config", "weights": "weights", "out": "out_dir"},
        lambda p: ["train", "--data", str(p["data"]), "--config", str(p["config"]), *TRAIN_SETS, *_cache(p),
                   "--set", f"model.weights={p['weights']}", "--out", str(p["out"]), "--no-progress"],
        output="out"),
    "cv": Command(
        {"data": "dataset", "config": "config", "out": "out_dir"},
        lambda p: ["cv", "--data", str(p["data"]), "--config", str(p["config"]), *TRAIN_SETS, *_cache(p),
                   "--out", str(p["out"]), "--no-progress"],
        output="out"),
    "evaluate": Command(
        {"model": "model", "data": "dataset", "out": "out_dir"},
        lambda p: ["evaluate", "--model", str(p["model"]), "--data", str(p["data"]), "--format", "midog25",
                   "--domain", "scanner", "--out", str(p["out"]), "--device", "cpu"],
        output="out"),
    "predict": Command(
        {"model": "model", "data": "dataset", "out": "out_file"},
        lambda p: ["predict", str(p["data"]), "--model", str(p["model"]), "--out", str(p["out"]),
                   "--device", "cpu"],
        output="out", out_suffix=".csv"),
    "predict-stack": Command(
        {"model": "model", "stack": "stack", "out": "out_file"},
        lambda p: ["predict", str(p["stack"]), "--model", str(p["model"]), "--out", str(p["out"]),
                   "--device", "cpu"],
        output="out", out_suffix=".json"),
    "export": Command(
        {"model": "model", "out": "out_file"},
        lambda p: ["export", "--model", str(p["model"]), "--out", str(p["out"])],
        output="out", out_suffix=".tar.gz"),
    "challenge": Command(
        {"model": "model", "stack": "stack", "out": "out_dir"},
        lambda p: ["challenge", "--input-dir", str(p["_input"]), "--output-dir", str(p["out"]),
                   "--model-dir", str(p["model"]), "--device", "cpu"],
        output="out", names={"stack/missing": STACK_SLOT, "stack/fifo": STACK_SLOT}),  # it reads a folder
    "models-check": Command({"weights": "weights"},
                            lambda p: ["models", "check", "tiny-vit-reg4", "--weights", str(p["weights"])]),
    # a slide's own problems (unreadable, no resolution...) fail that slide alone, with exit status 1 and the
    # cohort's tables written (tests/slides/test_slides_cohort.py); the model, the points file and the output
    # folder are the whole run's, so they end it in one line before anything is written
    "slides": Command(
        {"model": "model", "slide": "wsi", "points": "points", "out": "out_dir"},
        lambda p: ["slides", str(p["slide"]), "--points", str(p["points"]), "--model", str(p["model"]), "--out",
                   str(p["out"]), "--device", "cpu", "--no-progress"],
        output="out"),
    "score": Command(
        {"gt": "ground_truth", "pred": "predictions", "out": "out_file"},
        lambda p: ["score", "--ground-truth", str(p["gt"]), "--predictions", str(p["pred"]),
                   "--json", str(p["out"])],
        output="out", out_suffix=".json"),
}


# --------------------------------------------------------------------------- how to break each kind

Breaker = Callable[[Path], tuple[Path, str]]
"""Given the good input's path: (the path to pass instead, the text the error must name)."""


def _zero(target: Callable[[Path], Path]) -> Breaker:
    def br(p: Path) -> tuple[Path, str]:
        f = target(p)
        f.write_bytes(b"")
        return p, f.name
    return br


def _junk(target: Callable[[Path], Path], data: bytes = b"\x00\x01 this is not what it claims\xff") -> Breaker:
    def br(p: Path) -> tuple[Path, str]:
        f = target(p)
        f.write_bytes(data)
        return p, f.name
    return br


def _truncate(target: Callable[[Path], Path]) -> Breaker:
    def br(p: Path) -> tuple[Path, str]:
        f = target(p)
        f.write_bytes(f.read_bytes()[: max(1, f.stat().st_size // 2)])
        return p, f.name
    return br


def _folder_instead(target: Callable[[Path], Path]) -> Breaker:
    def br(p: Path) -> tuple[Path, str]:
        f = target(p)
        f.unlink()
        f.mkdir()
        return p, f.name
    return br


def _missing(p: Path) -> tuple[Path, str]:
    gone = p.with_name(p.name + "-missing")
    return gone, gone.name


def _under_a_file(p: Path) -> tuple[Path, str]:
    blocker = p.parent / "a-file"
    blocker.write_text("x")
    return blocker / p.name, "a-file"


def _itself(p: Path) -> Path:
    return p


def _csv(p: Path) -> Path:
    return next(p.glob("*.csv"))


def _png(p: Path) -> Path:
    return p / "images" / "1.png"


def _drop_column(column: str) -> Breaker:
    def br(p: Path) -> tuple[Path, str]:
        import csv

        f = _csv(p)
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh))
        with open(f, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=[k for k in rows[0] if k != column])
            w.writeheader()
            w.writerows({k: v for k, v in r.items() if k != column} for r in rows)
        return p, column
    return br


def _model_file(p: Path) -> Path:
    return p / "model.safetensors"


def _nan_model(p: Path) -> tuple[Path, str]:
    from safetensors.torch import load_file, save_file

    f = _model_file(p)
    state = load_file(str(f))
    from safetensors import safe_open

    with safe_open(str(f), framework="pt") as fh:
        meta = fh.metadata()
    key = sorted(state)[0]
    state[key] = state[key].clone().fill_(float("nan"))
    save_file(state, str(f), metadata=meta)
    return p, "model.safetensors"


def _calibration(edit: Callable[[dict], None]) -> Breaker:
    """A model whose metadata's calibration entry was edited by hand (``model.json`` is for people: the entry
    read is the one in ``model.safetensors``)."""
    def br(p: Path) -> tuple[Path, str]:
        from safetensors import safe_open
        from safetensors.numpy import load_file, save_file

        f = _model_file(p)
        with safe_open(str(f), framework="numpy") as fh:
            meta = json.loads(fh.metadata()["mitotype"])
        edit(meta["calibration"])
        save_file(load_file(str(f)), str(f), metadata={"mitotype": json.dumps(meta)})
        return p, "model.safetensors"
    return br


def _good_map(**edits: object) -> Callable[[dict], None]:
    return lambda entry: entry.update(single={"slope": 1.5, "intercept": -0.5, "prevalence": 0.22, "figures": 300,
                                              **edits})


def _unfinished(p: Path) -> tuple[Path, str]:
    (p / STATE_FILE).write_text(json.dumps({"status": "running", "epochs_done": 1, "epochs_total": 3}))
    return p, p.name


def _garbage_state(p: Path) -> tuple[Path, str]:
    (p / STATE_FILE).write_text("{ not json")
    return p, STATE_FILE


def _empty_folder(p: Path) -> tuple[Path, str]:
    folder = p.parent / "empty-folder"
    folder.mkdir()
    return folder, "empty-folder"


def _a_file_instead_of_folder(p: Path) -> tuple[Path, str]:
    f = p.parent / "plain.txt"
    f.write_text("hello")
    return f, "plain.txt"


def _nan_weights(p: Path) -> tuple[Path, str]:
    from safetensors.torch import load_file, save_file

    state = load_file(str(p))
    key = sorted(state)[0]
    state[key] = state[key].clone().fill_(float("inf"))
    save_file(state, str(p))
    return p, p.name


def _pickle_with_code(p: Path) -> tuple[Path, str]:
    import torch

    evil = p.with_name("evil.pth")
    torch.save({"w": torch.zeros(1), "x": _RunsCode()}, evil)
    return evil, "evil.pth"


class _RunsCode:
    def __reduce__(self) -> tuple:
        return (os.getpid, ())


def _zero_pth(p: Path) -> tuple[Path, str]:
    f = p.with_name("zero.pth")
    f.write_bytes(b"")
    return f, "zero.pth"


def _yaml(text: str, token: str) -> Breaker:
    def br(p: Path) -> tuple[Path, str]:
        p.write_text(text)
        return p, token
    return br


def _json(text: str) -> Breaker:
    def br(p: Path) -> tuple[Path, str]:
        target = p if p.is_file() else next(p.glob("*.json"))
        target.write_text(text)
        return p, target.name
    return br


def _out_is_a_file(p: Path) -> tuple[Path, str]:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("precious")
    return p, p.name


def _out_is_a_folder(p: Path) -> tuple[Path, str]:
    p.mkdir(parents=True)
    return p, p.name


def _read_only(p: Path) -> tuple[Path, str]:
    ro = p.parent / "read-only"
    ro.mkdir()
    return ro / p.name, "read-only"


class _Watchdog:
    """Opens a FIFO for writing after ``seconds`` (then closes it: the reader sees an empty file), so a command
    that waits on the FIFO ends; ``fired`` says it had to. Issue 35: a FIFO as input hung the command."""

    seconds = 20.0
    active: ClassVar[list[_Watchdog]] = []

    def __init__(self, fifo: Path) -> None:
        self.fifo, self.fired, self.stop = fifo, False, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        _Watchdog.active.append(self)

    def _run(self) -> None:
        if self.stop.wait(self.seconds):
            return
        while not self.stop.is_set():
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until a reader waits
            except OSError:
                self.stop.wait(0.2)
                continue
            self.fired = True
            os.close(fd)


def _fifo(name: str) -> Breaker:
    """A FIFO (named pipe) where the input should be: refused, never waited on."""
    def br(p: Path) -> tuple[Path, str]:
        fifo = p.parent / name
        os.mkfifo(fifo)
        _Watchdog(fifo)
        return fifo, name
    return br


def _fifo_inside(target: Callable[[Path], Path]) -> Breaker:
    def br(p: Path) -> tuple[Path, str]:
        f = target(p)
        f.unlink()
        os.mkfifo(f)
        _Watchdog(f)
        return p, f.name
    return br


def _empty_folder_says_so(p: Path) -> tuple[Path, str]:
    folder = p.parent / "no-figures"
    folder.mkdir()
    return folder, "no images in"


CASES: dict[str, dict[str, Breaker]] = {
    "dataset": {
        "missing": _missing,
        "empty-folder": _empty_folder,
        "not-a-dataset-file": _a_file_instead_of_folder,
        "under-a-file": _under_a_file,
        "csv-zero-byte": _zero(_csv),
        "csv-binary-junk": _junk(_csv),
        "csv-missing-image_id": _drop_column("image_id"),
        "csv-missing-majority": _drop_column("majority"),
        "png-zero-byte": _zero(_png),
        "png-truncated": _truncate(_png),
        "png-not-an-image": _junk(_png),
        "png-is-a-folder": _folder_instead(_png),
        # issue 35
        "fifo": _fifo("labels-fifo.csv"),
        "empty-folder-says-no-images": _empty_folder_says_so,
    },
    "stack": {
        "missing": _missing,
        "zero-byte": _zero(_itself),
        "truncated": _truncate(_itself),
        "not-a-tiff": _junk(_itself, b"II*\x00 this is not a tiff at all"),
        "fifo": _fifo("stack-fifo.tiff"),  # issue 35
    },
    "model": {
        "missing": _missing,
        "empty-folder": _empty_folder,
        "a-file": _a_file_instead_of_folder,
        "weights-zero-byte": _zero(_model_file),
        "weights-truncated": _truncate(_model_file),
        "weights-junk": _junk(_model_file),
        "weights-non-finite": _nan_model,
        "unfinished-run": _unfinished,
        "run-state-garbage": _garbage_state,
        "calibration-slope-reversed": _calibration(_good_map(slope=-1.5)),
        "calibration-slope-true": _calibration(_good_map(slope=True)),  # was read as a slope of 1 (outside probe)
        "calibration-figures-not-a-count": _calibration(_good_map(figures="many")),  # was accepted (outside probe)
        "calibration-key-missing": _calibration(lambda entry: entry.update(single={"slope": 1.5})),
        "calibration-not-a-map": _calibration(lambda entry: entry.update(single=None)),
    },
    "wsi": {},  # a slide's own problems fail that slide alone (tests/slides/test_slides_cohort.py)
    "points": {
        "missing": _missing,
        "zero-byte": _zero(_itself),
        "truncated": _truncate(_itself),
        "not-json": _json("{ nope"),
        "not-points": _json('{"something": 1}'),
        "track1-point-not-a-list": _json('{"type": "Multiple points", "points": [{"point": "0.1, 0.2"}]}'),
        "fifo": _fifo("fifo.json"),
    },
    "weights": {
        "missing": _missing,
        "zero-byte-safetensors": _zero(_itself),
        "zero-byte-pth": _zero_pth,
        "truncated": _truncate(_itself),
        "junk": _junk(_itself),
        "non-finite": _nan_weights,
        "pickle-with-code": _pickle_with_code,
        "empty-folder": _empty_folder,
        "under-a-file": _under_a_file,
    },
    "config": {
        "missing": _missing,
        "folder": _empty_folder,
        "not-yaml": _yaml("optim: [unclosed\n", "config.yaml"),
        "duplicate-key": _yaml("optim:\n  lr: 0.1\n  lr: 0.2\n", "'lr'"),
        "unknown-key": _yaml("optim:\n  epoch: 3\n", "optim.epoch"),
        "wrong-type": _yaml("optim:\n  weight_decay: lots\n", "optim.weight_decay"),
        "top-level-list": _yaml("- a\n- b\n", "config.yaml"),
        "binary": _junk(_itself, b"\xff\xfe\x00\x00garbage"),
        "fifo": _fifo("config-fifo.yaml"),  # issue 35
    },
    "ground_truth": {
        "missing": _missing,
        "zero-byte": _zero(_itself),
        "not-json": _json("{ nope"),
        "wrong-shape": _json('{"image": "s1.tiff"}'),
        "folder": _empty_folder,
        "fifo": _fifo("truth-fifo.json"),  # issue 35
    },
    "predictions": {
        "missing": _missing,
        "zero-byte-output": _zero(lambda p: p / "s1.json"),
        "not-json": _json("[{"),
        "wrong-entries": _json('["normal", "atypical"]'),
        "empty-folder": _empty_folder,
        "fifo-output": _fifo_inside(lambda p: p / "s1.json"),  # issue 35
    },
    "out_dir": {
        "is-a-file": _out_is_a_file,
        "under-a-file": _under_a_file,
        "read-only": _read_only,
    },
    "out_file": {
        "is-a-folder": _out_is_a_folder,
        "under-a-file": _under_a_file,
        "read-only": _read_only,
    },
}


NOT_A_MISTAKE = {("predict", "csv-missing-majority")}
"""(command, case) pairs that are fine input for that command: predict classifies figures without labels, so a
label file without its label column is what it is for (issue 37; tests/data/test_unlabelled_figures.py)."""


def _matrix() -> list[tuple[str, str, str, str]]:
    return [(cmd, slot, kind, case) for cmd, spec in COMMANDS.items() for slot, kind in spec.slots.items()
            for case in CASES[kind] if (cmd, case) not in NOT_A_MISTAKE]


MATRIX = _matrix()


# --------------------------------------------------------------------------- a read-only folder, simulated

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


@pytest.fixture
def read_only_under(monkeypatch):
    """Make writes under the given folders fail as on a read-only mount (tests run as root, for whom
    permission bits do not stop anything)."""
    roots: list[str] = []

    def blocked(path: object) -> bool:
        try:
            text = os.path.abspath(os.fspath(path))
        except TypeError:
            return False
        return any(text == r or text.startswith(r + os.sep) for r in roots)

    def refuse(path: object) -> OSError:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))

    real_mkdir, real_open, real_os_open, real_mkstemp = os.mkdir, builtins.open, os.open, tempfile.mkstemp

    def mkdir(path, *a, **k):
        if blocked(path) and not os.path.isdir(path):
            raise refuse(path)
        return real_mkdir(path, *a, **k)

    def open_(file, mode="r", *a, **k):
        if isinstance(file, str | os.PathLike) and blocked(file) and any(c in mode for c in "wax+"):
            raise refuse(file)
        return real_open(file, mode, *a, **k)

    def os_open(path, flags, *a, **k):
        if blocked(path) and flags & _WRITE_FLAGS:
            raise refuse(path)
        return real_os_open(path, flags, *a, **k)

    def mkstemp(*a, dir=None, **k):
        if dir is not None and blocked(dir):
            raise refuse(Path(dir) / "tmpXXXX")
        return real_mkstemp(*a, dir=dir, **k)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return lambda folder: roots.append(os.path.abspath(folder))


# --------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def backbone_weights(tmp_path_factory) -> Path:
    from tests.models.conftest import save_random_backbone

    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_random_backbone("tiny-vit-reg4", path)
    return path


def _inputs(env: Env, spec: Command) -> dict[str, Path]:
    paths: dict[str, Path] = {"_root": env.root}
    for slot, kind in spec.slots.items():
        if kind == "out_file":
            paths[slot] = env.out_file(spec.out_suffix)
        else:
            paths[slot] = getattr(env, kind)()
    if "stack" in paths:  # the challenge reads <input>/images/<slot>/<one stack>
        folder = env.root / "input" / "images" / STACK_SLOT
        folder.mkdir(parents=True)
        paths["_input"] = env.root / "input"
    return paths


def _place_stack(paths: dict[str, Path]) -> None:
    """Put the (possibly broken) stack where the challenge looks for it."""
    if "_input" in paths:
        src = paths["stack"]
        dest = paths["_input"] / "images" / STACK_SLOT / "stack.tiff"
        if src.is_file():
            shutil.copy(src, dest)
        elif src.is_dir():
            dest.mkdir()


@pytest.mark.parametrize(("command", "slot", "kind", "case"), MATRIX, ids=["-".join(m) for m in MATRIX])
def test_bad_input_is_one_clear_line(command, slot, kind, case, synth_dir, backbone_weights, tmp_path, capsys,
                                     read_only_under):
    spec = COMMANDS[command]
    env = Env(tmp_path, synth_dir, backbone_weights)
    paths = _inputs(env, spec)
    bad, token = CASES[kind][case](paths[slot])
    token = spec.names.get(f"{kind}/{case}", token)
    if case == "read-only":
        read_only_under(bad.parent)
    paths[slot] = bad
    _place_stack(paths)
    before = _snapshot(paths, spec)
    try:
        code = main(spec.argv(paths))
    finally:
        watchdogs, _Watchdog.active[:] = list(_Watchdog.active), []
        for dog in watchdogs:
            dog.stop.set()
    err = capsys.readouterr().err
    assert not any(dog.fired for dog in watchdogs), f"{command} waited on a FIFO instead of refusing it"
    assert code not in (0, None), f"{command} accepted {kind}/{case}"
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert len(lines[-1]) < 1500
    assert token in lines[-1], f"the error does not name {token!r}: {lines[-1]}"
    assert _snapshot(paths, spec) == before, "the failed command changed its output"


def _snapshot(paths: dict[str, Path], spec: Command) -> dict[str, bytes] | None:
    """What the command's output holds (files and their bytes): a failed run must leave it as it was."""
    if spec.output is None:
        return None
    out = paths[spec.output]
    if out.is_file():
        return {out.name: out.read_bytes()}
    if out.is_dir():
        return {str(f.relative_to(out)): f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()}
    return {}


CHEAP = ["data-inspect", "evaluate", "predict", "predict-stack", "export", "challenge", "models-check", "score",
         "slides"]


@pytest.mark.parametrize("command", CHEAP)
def test_the_good_inputs_work(command, synth_dir, backbone_weights, tmp_path, capsys):
    """The control: with every input good, the command succeeds (so the failures above are the cases')."""
    spec = COMMANDS[command]
    paths = _inputs(Env(tmp_path, synth_dir, backbone_weights), spec)
    _place_stack(paths)
    assert main(spec.argv(paths)) == 0, capsys.readouterr().err


def test_matrix_size():
    """The note in issue 20 names the matrix size; keep it honest."""
    every = sum(len(CASES[k]) for spec in COMMANDS.values() for k in spec.slots.values())
    assert len(MATRIX) == every - sum(1 for cmd, case in NOT_A_MISTAKE for spec in [COMMANDS[cmd]]
                                      for k in spec.slots.values() if case in CASES[k])
    assert len(MATRIX) >= 150


# --------------------------------------------------------------------------- issue 35: the second probe
#
# The matrix above holds the cases that end in one error line (a FIFO as any input file, an empty folder
# naming "no images in"). The probe's other cases end otherwise (a warning, a refusal with the old outputs
# kept, a success that used to crash), so each has its test here, named by the words:
#   full disk in the patch cache ........ test_full_disk_while_the_patch_cache_is_written (+ _on_a_real_tmpfs)
#   file size limit in train ............ test_file_too_large_while_training
#   evaluate --model CV --out CV ........ test_evaluate_into_a_cv_folder_is_refused
#   linked folders, broken links ........ test_linked_folders_are_followed_and_broken_links_reported
#   names that are not UTF-8 ............ test_names_that_are_not_utf8_are_read_and_written_escaped
#   --json /dev/stdout, linked --out .... test_a_linked_or_streamed_output_is_written_through
#   export manifest format .............. test_a_manifest_of_a_newer_format_is_refused
#   data synth --seed -1 ................ test_synth_with_a_negative_seed_is_one_line_and_writes_nothing
#   outputs replaced as a unit .......... test_evaluate_outputs_are_replaced_as_one_set,
#                                         test_predict_csv_and_gallery_are_replaced_as_one_set,
#                                         test_cv_reports_are_replaced_as_one_set (+ tests/test_floor_io.py)
#   blank pages ......................... test_blank_pages_and_figures_are_warned_one_by_one
#   --adapt-bn stack --stack-size 1 ..... test_a_stack_too_small_to_adapt_on_is_refused
#   LZW/JPEG stacks, imagecodecs ........ test_compressed_tiff_stacks_are_read
#   --model M M ......................... test_a_model_given_twice_is_refused
#   FIFO as input ....................... the matrix's "fifo" cases
#   empty folder ........................ the matrix's "empty-folder-says-no-images" case
#   unwritable cache .................... test_an_unwritable_cache_names_mitotype_cache
#   HOME empty or missing ............... tests/test_floor_io.py::test_a_missing_or_empty_home_...
#   10,000 x 10,000 PNG ................. test_a_huge_png_prints_no_raw_pillow_warning

SRC_PATHS = os.pathsep.join([str(Path(mitotype.__file__).resolve().parents[1]),  # the package under test
                             str(Path(__file__).resolve().parents[2])])


def _run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, preexec=None,
             timeout: int = 300) -> subprocess.CompletedProcess:
    """The command as a user runs it, in its own process (for faults that kill or limit a process)."""
    environment = {**os.environ, "PYTHONPATH": SRC_PATHS, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
                   **(env or {})}
    return subprocess.run([sys.executable, "-m", "mitotype", *args], capture_output=True, text=True, cwd=cwd,
                          env=environment, preexec_fn=preexec, timeout=timeout)


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    return lines[-1]


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if ".locks" not in p.parts and p.name != ".mitotype-run.lock")


def _patches(folder: Path, n: int = 3, seed: int = 0) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


# ---- the faults


def test_full_disk_while_the_patch_cache_is_written(synth_dir, tmp_path, capsys, monkeypatch):
    """The store's space is reserved first, so a full disk is an OSError there, not SIGBUS in the memory map."""
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    monkeypatch.setenv("MITOTYPE_CACHE", str(tmp_path / "cache"))
    model = make_model_dir(tmp_path / "model")
    code = main(["predict", str(synth_dir), "--model", str(model), "--out", str(tmp_path / "p.csv"),
                 "--device", "cpu"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "No space left on device" in line and "MITOTYPE_CACHE" in line
    assert str(tmp_path / "cache" / "patches") in line
    assert [p.name for p in (tmp_path / "cache" / "patches").iterdir()] == [".locks"]  # no temporary store left
    assert not (tmp_path / "p.csv").exists()


def test_full_disk_while_the_patch_cache_is_written_on_a_real_tmpfs(synth_dir, tmp_path):
    """The same on a real 1 MB file system (root may mount one; skipped where mounting is not allowed)."""
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tiny)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        model = make_model_dir(tmp_path / "model")
        done = _run_cli(["predict", str(synth_dir), "--model", str(model), "--out", str(tmp_path / "p.csv"),
                         "--device", "cpu"], tmp_path, env={"MITOTYPE_CACHE": str(tiny)})
        assert done.returncode == 2, f"exit {done.returncode} (135: SIGBUS): {done.stderr[-2000:]}"
        line = _one_error_line(done.stderr)
        assert "No space left on device" in line and "MITOTYPE_CACHE" in line
        assert [p.name for p in (tiny / "patches").iterdir()] == [".locks"]
    finally:
        subprocess.run(["umount", str(tiny)], capture_output=True)


def test_file_too_large_while_training(synth_dir, tmp_path):
    """torch.save under a file size limit raised a RuntimeError: a 39-line traceback. Now one line naming
    the checkpoint, exit 2, no temporary file left. The patch store is built first (it is larger than the limit)."""
    from mitotype.training.inputs import load_figures

    cache = tmp_path / "cache"
    load_figures(synth_dir, fmt="midog25", domain=["scanner"], cache_dir=cache)
    limit = 300_000  # above model.safetensors of the tiny ViT (~0.14 MB), below last_state.pt (~0.44 MB)
    done = _run_cli(["train", "--data", str(synth_dir), *TRAIN_SETS, "--set", f"data.cache_dir={cache}",
                     "--out", str(tmp_path / "run"), "--no-progress"], tmp_path,
                    preexec=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert done.returncode == 2, done.stderr[-3000:]
    line = _one_error_line(done.stderr)
    assert line == f"error: {tmp_path / 'run' / 'last_state.pt'}: File too large"
    run = tmp_path / "run"  # removed by train when no epoch could be kept; else without temporary files
    assert not run.exists() or [p for p in run.iterdir() if p.name.endswith(".tmp")] == []


def _fake_cv_folder(root: Path) -> dict[str, bytes]:
    make_model_dir(root / "folds" / "lodo-a" / "model")
    (root / "results.json").write_text(json.dumps({"scheme": "lodo", "folds": [{"name": "lodo-a"}]}))
    (root / "predictions.csv").write_text("uid,p_atypical\n1.png,0.2\n")
    (root / "report.html").write_text("<html>cv</html>")
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}


def test_evaluate_into_a_cv_folder_is_refused(synth_dir, tmp_path, capsys):
    cv = tmp_path / "cv"
    before = _fake_cv_folder(cv)
    code = main(["evaluate", "--model", str(cv), "--data", str(synth_dir), "--format", "midog25", "--domain",
                 "scanner", "--out", str(cv), "--device", "cpu"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "is also a --model folder" in line and str(cv) in line
    code = main(["evaluate", "--model", str(make_model_dir(tmp_path / "other")), "--data", str(synth_dir),
                 "--format", "midog25", "--domain", "scanner", "--out", str(cv), "--device", "cpu"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "holds the results of a cross-validation" in line and str(cv) in line
    assert {p.name: p.read_bytes() for p in cv.iterdir() if p.is_file()} == before
    # into a sub-folder of it, it works
    assert main(["evaluate", "--model", str(cv), "--data", str(synth_dir), "--format", "midog25", "--domain",
                 "scanner", "--out", str(cv / "eval"), "--device", "cpu"]) == 0
    assert (cv / "eval" / "results.json").is_file()


def test_linked_folders_are_followed_and_broken_links_reported(tmp_path, capsys):
    data = _patches(tmp_path / "data" / "scanner-a", n=2)
    elsewhere = _patches(tmp_path / "elsewhere" / "scanner-b", n=3, seed=1)
    (data.parent / "linked").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "loop").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # a link back up
    assert main(["data", "inspect", str(data.parent), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["figures"] == 5  # 2 here + 3 through the link, the loop followed no further
    assert any(p["kind"] == "ignored-folder" and "already read" in p["message"] for p in report["problems"])
    (data / "gone.png").symlink_to(tmp_path / "deleted.png")
    model = make_model_dir(tmp_path / "model")
    code = main(["predict", str(data.parent), "--model", str(model), "--out", str(tmp_path / "p.csv"),
                 "--device", "cpu"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "gone.png" in line and "broken link" in line
    assert main(["predict", str(data.parent), "--model", str(model), "--out", str(tmp_path / "p.csv"),
                 "--device", "cpu", "--on-error", "skip"]) == 0
    assert "skipped" in capsys.readouterr().out
    assert len(list(csv.DictReader((tmp_path / "p.csv").open()))) == 5
    only_links = tmp_path / "only-links"
    only_links.mkdir()
    (only_links / "a.png").symlink_to(tmp_path / "deleted.png")
    assert main(["data", "inspect", str(only_links)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "no images in" in line and "a.png: broken link" in line


def test_names_that_are_not_utf8_are_read_and_written_escaped(tmp_path, capsys):
    folder = _patches(tmp_path / "figures", n=1)
    latin1 = Path(os.fsdecode(str(folder).encode() + b"/caf\xe9.png"))
    shutil.copy(folder / "p0.png", latin1)
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 90, np.uint8) + np.eye(64, dtype=np.uint8)[..., None]).save(
        Path(os.fsdecode(str(folder).encode() + b"/k\xf6rper.png")))  # a warning names it too
    model = make_model_dir(tmp_path / "model")
    out = tmp_path / "p.csv"
    assert main(["predict", str(folder), "--model", str(model), "--out", str(out), "--device", "cpu",
                 "--report"]) == 0, capsys.readouterr().err
    ids = [row["id"] for row in csv.DictReader(out.open(encoding="utf-8"))]
    assert sorted(ids) == ["caf\\xe9.png", "k\\xf6rper.png", "p0.png"]
    assert json.dumps("caf\\xe9.png")[1:-1] in (tmp_path / "p.html").read_text(encoding="utf-8")
    assert main(["data", "inspect", str(folder)]) == 0
    assert "k\\xf6rper.png" in capsys.readouterr().out
    stack = Path(os.fsdecode(str(tmp_path).encode() + b"/st\xe4ck.tiff"))
    tifffile.imwrite(stack, np.random.default_rng(0).integers(0, 255, (2, 128, 128, 3), dtype=np.uint8),
                     photometric="rgb")
    assert main(["predict", str(stack), "--model", str(model), "--out", str(out), "--device", "cpu"]) == 0
    assert [row["id"] for row in csv.DictReader(out.open(encoding="utf-8"))] == ["st\\xe4ck.tiff#0",
                                                                                 "st\\xe4ck.tiff#1"]


def test_a_linked_or_streamed_output_is_written_through(tmp_path, capsys):
    env = Env(tmp_path, tmp_path, tmp_path)
    gt, preds = env.ground_truth(), env.predictions()
    real = tmp_path / "kept" / "metrics.json"
    real.parent.mkdir()
    real.write_text("{}")
    link = tmp_path / "metrics.json"
    link.symlink_to(real)
    assert main(["score", "--ground-truth", str(gt), "--predictions", str(preds), "--json", str(link)]) == 0
    assert link.is_symlink() and "aggregates" in json.loads(real.read_text())
    # a stream: /dev/stdout is a link to /proc/self/fd/1, the process's own output (a pipe here); a link of our
    # own to it is the same case without touching /dev, which the old code replaced by a regular file
    stream = tmp_path / "stdout.json"
    stream.symlink_to("/proc/self/fd/1")
    done = _run_cli(["score", "--ground-truth", str(gt), "--predictions", str(preds), "--json", str(stream)],
                    tmp_path)
    assert done.returncode == 0, done.stderr
    assert stream.is_symlink() and '"aggregates"' in done.stdout


def test_a_manifest_of_a_newer_format_is_refused(tmp_path, capsys):
    root = tmp_path / "opt-ml-model"
    make_model_dir(root / "member-0")
    input_dir = tmp_path / "input" / "images" / STACK_SLOT
    input_dir.mkdir(parents=True)
    Env(tmp_path, tmp_path, tmp_path).stack().rename(input_dir / "s.tiff")
    for version in (99, "1", None, 1):
        (root / "mitotype-export.json").write_text(json.dumps({"format": version, "members": ["member-0"]}))
        code = main(["challenge", "--input-dir", str(tmp_path / "input"), "--output-dir", str(tmp_path / "out"),
                     "--model-dir", str(root), "--device", "cpu"])
        err = capsys.readouterr().err
        if version == 1:
            assert code == 0, err
        else:
            assert code == 2 and "'format'" in _one_error_line(err) and "mitotype-export.json" in err


def test_synth_with_a_negative_seed_is_one_line_and_writes_nothing(tmp_path, capsys):
    assert main(["data", "synth", "--seed", "-1", "--out", str(tmp_path / "synth")]) == 2
    assert "seed" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "synth").exists()


# ---- outputs replaced as a unit


def _disk_full_in(monkeypatch, module: str, name: str) -> None:
    """Make one writer of a set fail as on a full disk, after the others have written."""
    import importlib

    def full(path, *args, **kwargs):
        Path(path).write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(importlib.import_module(module), name, full)


def test_evaluate_outputs_are_replaced_as_one_set(synth_dir, tmp_path, capsys, monkeypatch):
    model, out = make_model_dir(tmp_path / "model"), tmp_path / "eval"
    argv = ["evaluate", "--model", str(model), "--data", str(synth_dir), "--format", "midog25", "--domain",
            "scanner", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["gallery.html", "predictions.csv", "report.html", "results.json"]
    (out / f".results.json.{_dead_writer()}.x.staged").write_text("left by a killed run")
    _disk_full_in(monkeypatch, "mitotype.evaluation.gallery", "atomic_write_text")  # the last of the four
    capsys.readouterr()
    assert main([*argv, "--threshold", "0.2"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "No space left on device" in line and str(out / "gallery.html") in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old set, and nothing left over


def _dead_writer() -> str:
    from mitotype.ioutils import writer_tag

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    return f"{writer_tag().split('-')[0]}-{child.stdout.strip()}"


def test_predict_csv_and_gallery_are_replaced_as_one_set(tmp_path, capsys, monkeypatch):
    folder, model = _patches(tmp_path / "figures"), make_model_dir(tmp_path / "model")
    out = tmp_path / "p.csv"
    argv = ["predict", str(folder), "--model", str(model), "--out", str(out), "--device", "cpu", "--report"]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    _disk_full_in(monkeypatch, "mitotype.evaluation.gallery", "atomic_write_text")
    assert main([*argv, "--threshold", "0.1"]) == 2
    assert "No space left on device" in _one_error_line(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_cv_reports_are_replaced_as_one_set(synth_figures, tmp_path, monkeypatch):
    """results.json, predictions.csv and report.html of ``cv`` (folds trained once, reused)."""
    from mitotype.experiments import cv
    from mitotype.training.config import load_config

    def predicted(config, figures, fold, model_dir, tta):
        model_dir.mkdir(parents=True, exist_ok=True)
        p = np.linspace(0.1, 0.9, len(fold.test_idx))
        return cv.PredictionTable.from_scores(figures.records, np.asarray(fold.test_idx), p, 0.5, fold.name)

    monkeypatch.setattr(cv, "_train_fold", lambda *a, **k: None)
    monkeypatch.setattr(cv, "_predict_fold", predicted)
    config = load_config(overrides=TINY_OVERRIDES)
    cv.run_cv(config, synth_figures, tmp_path, resume=False, n_bootstrap=10)
    names = ["predictions.csv", "report.html", "results.json"]
    before = {name: (tmp_path / name).read_bytes() for name in names}
    _disk_full_in(monkeypatch, "mitotype.evaluation.report", "atomic_write_text")
    with pytest.raises(MitotypeError, match="No space left on device"):
        cv.run_cv(config, synth_figures, tmp_path, resume=False, n_bootstrap=10, scheme="kfold", k=2)
    assert {name: (tmp_path / name).read_bytes() for name in names} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---- the smaller points


def test_blank_pages_and_figures_are_warned_one_by_one(tmp_path, capsys):
    from PIL import Image

    model = make_model_dir(tmp_path / "model")
    pages = np.random.default_rng(0).integers(0, 255, (4, 128, 128, 3), dtype=np.uint8)
    pages[1], pages[3] = 0, 255
    tifffile.imwrite(tmp_path / "stack.tiff", pages, photometric="rgb")
    assert main(["predict", str(tmp_path / "stack.tiff"), "--model", str(model), "--out", str(tmp_path / "p.csv"),
                 "--device", "cpu"]) == 0
    warned = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 2 and "page 1 is blank: every pixel is 0" in warned[0]
    assert "page 3 is blank: every pixel is 255" in warned[1]
    folder = _patches(tmp_path / "figures", n=2)
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(folder / "black.png")
    assert main(["predict", str(folder), "--model", str(model), "--out", str(tmp_path / "q.csv"),
                 "--device", "cpu"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:") and "blank:" in line]
    assert len(notes) == 1 and "black.png" in notes[0]


def test_a_stack_too_small_to_adapt_on_is_refused(tmp_path, capsys):
    from mitotype.models.predict import MIN_ADAPT_FIGURES, adaptation_stacks

    model = make_model_dir(tmp_path / "model")
    stack = Env(tmp_path, tmp_path, tmp_path).stack()
    code = main(["predict", str(stack), "--model", str(model), "--out", str(tmp_path / "p.csv"), "--device", "cpu",
                 "--adapt-bn", "stack", "--stack-size", "1"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and f"at least {MIN_ADAPT_FIGURES} figures per stack" in line and "--stack-size 1" in line
    assert adaptation_stacks(40, "stack", 16) == [(0, 16), (16, 32), (32, 40)]
    assert adaptation_stacks(35, "stack", 16) == [(0, 16), (16, 35)]  # 3 left over join the stack before
    assert adaptation_stacks(5, "domain", 16) == [(0, 5)]


@pytest.mark.parametrize("codecs", ["imagecodecs", "pillow-only"])
def test_compressed_tiff_stacks_are_read(tmp_path, monkeypatch, codecs):
    """Stacks saved LZW- or JPEG-compressed (common for slides and stacks): read by tifffile with imagecodecs, a
    dependency of every extra that reads TIFF through tifffile (train, wsi), and by Pillow's libtiff in the base
    install, which leaves imagecodecs out (80 MB): both give the same pages."""
    import tomllib

    from PIL import Image

    from mitotype.serving.stack import read_stack

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    for extra in ("train", "wsi"):
        assert any(d.startswith("imagecodecs") for d in project["optional-dependencies"][extra]), extra
    if codecs == "pillow-only":  # the base install: tifffile finds no imagecodecs
        monkeypatch.setitem(sys.modules, "imagecodecs", None)
    pages = np.random.default_rng(0).integers(0, 255, (3, 128, 128, 3), dtype=np.uint8)
    frames = [Image.fromarray(p) for p in pages]
    for compression in ("tiff_lzw", "jpeg"):
        path = tmp_path / f"{compression}.tiff"
        frames[0].save(path, save_all=True, append_images=frames[1:], compression=compression)
        with tifffile.TiffFile(path) as tif:
            assert tif.pages[0].compression.name in ("LZW", "JPEG")
        got = read_stack(path)
        if compression == "tiff_lzw":
            np.testing.assert_array_equal(got, pages)  # lossless
        else:
            assert got.shape == pages.shape and np.abs(got.astype(int) - pages).mean() < 60


def test_a_model_given_twice_is_refused(synth_dir, tmp_path, capsys):
    model = make_model_dir(tmp_path / "model")
    copy = Path(shutil.copytree(model, tmp_path / "copy"))
    stack = Env(tmp_path, tmp_path, tmp_path).stack()
    for models, says in (([model, model], "given twice"), ([model, copy], "the same weights")):
        code = main(["predict", str(stack), "--model", *map(str, models), "--out", str(tmp_path / "p.csv"),
                     "--device", "cpu"])
        assert code == 2 and says in _one_error_line(capsys.readouterr().err)
        code = main(["evaluate", "--model", *map(str, models), "--data", str(synth_dir), "--format", "midog25",
                     "--out", str(tmp_path / "e"), "--device", "cpu"])
        assert code == 2 and says in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "e" / "results.json").exists()


def test_an_unwritable_cache_names_mitotype_cache(synth_dir, tmp_path, capsys, monkeypatch, read_only_under):
    monkeypatch.setenv("MITOTYPE_CACHE", str(tmp_path / "cache"))
    read_only_under(tmp_path / "cache")
    model = make_model_dir(tmp_path / "model")
    code = main(["predict", str(synth_dir), "--model", str(model), "--out", str(tmp_path / "p.csv"),
                 "--device", "cpu"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "MITOTYPE_CACHE" in line and "Read-only file system" in line


def test_a_huge_png_prints_no_raw_pillow_warning(tmp_path):
    from PIL import Image

    folder = _patches(tmp_path / "figures", n=1)
    Image.new("RGB", (10_000, 10_000), (200, 120, 160)).save(folder / "huge.png", compress_level=1)
    done = _run_cli(["data", "inspect", str(folder), "--check", "header"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "DecompressionBombWarning" not in done.stderr and "warnings.warn" not in done.stderr
    assert done.stderr.strip() == "" and "huge.png" in done.stdout  # its wrong-size warning, one line
