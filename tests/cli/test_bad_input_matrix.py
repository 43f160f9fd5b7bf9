"""Every kind of bad input x every command that reads it (issue 20): a user mistake ends in one line
``error: ...`` naming the file, a non-zero exit, no traceback, and nothing written.

The matrix is built from two tables. ``COMMANDS`` says, per command, which input kinds it reads (its
``slots``) and how its command line is made from one path per slot; ``CASES`` says, per input kind, how
to break an input. A new command inherits every check of the kinds it declares, and a new case runs
against every command reading that kind.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mitotype.cli.main import main
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
        output="out", names={"stack/missing": STACK_SLOT}),  # it reads a folder: no stack there
    "models-check": Command({"weights": "weights"},
                            lambda p: ["models", "check", "tiny-vit-reg4", "--weights", str(p["weights"])]),
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
    },
    "stack": {
        "missing": _missing,
        "zero-byte": _zero(_itself),
        "truncated": _truncate(_itself),
        "not-a-tiff": _junk(_itself, b"II*\x00 this is not a tiff at all"),
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
    },
    "ground_truth": {
        "missing": _missing,
        "zero-byte": _zero(_itself),
        "not-json": _json("{ nope"),
        "wrong-shape": _json('{"image": "s1.tiff"}'),
        "folder": _empty_folder,
    },
    "predictions": {
        "missing": _missing,
        "zero-byte-output": _zero(lambda p: p / "s1.json"),
        "not-json": _json("[{"),
        "wrong-entries": _json('["normal", "atypical"]'),
        "empty-folder": _empty_folder,
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
    code = main(spec.argv(paths))
    err = capsys.readouterr().err
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


CHEAP = ["data-inspect", "evaluate", "predict", "predict-stack", "export", "challenge", "models-check", "score"]


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
