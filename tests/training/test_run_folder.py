"""A run folder protects and describes itself (issue 20, item 1): state, lock, refusal to reuse, and
refusal of an unfinished run by every command that takes a model."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mitotype.cli.main import main
from mitotype.errors import MitotypeError
from mitotype.runs import STATE_FILE, read_run_state, run_state_of, training_run
from mitotype.serving.challenge import OUTPUT_NAME, STACK_SLOT
from tests.conftest import TINY_OVERRIDES


def _train_args(data: Path, out: Path, cache: Path, *extra: str, epochs: int = 1) -> list[str]:
    settings = [*TINY_OVERRIDES, f"optim.epochs={epochs}", f"data.cache_dir={cache}"]
    sets = [x for o in settings for x in ("--set", o)]
    return ["train", "--data", str(data), *sets, "--out", str(out), "--no-progress", *extra]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    return lines[-1]


@pytest.fixture(scope="module")
def finished_run(synth_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    out = root / "run"
    assert main(_train_args(synth_dir, out, root / "cache")) == 0
    return out


@pytest.fixture(scope="module")
def interrupted_run(synth_dir, tmp_path_factory) -> Path:
    """A 2-epoch run stopped after epoch 1, as a kill between epochs leaves it (configured as the CLI
    configures it, so ``train --resume`` can continue it)."""
    from mitotype.cli.train import load_data
    from mitotype.evaluation.splits import validation_split
    from mitotype.training.config import load_config
    from mitotype.training.trainer import Trainer

    root = tmp_path_factory.mktemp("interrupted")
    out = root / "run"
    config = load_config(overrides=[*TINY_OVERRIDES, "optim.epochs=2", f"data.cache_dir={root / 'cache'}",
                                    f"data.path={synth_dir}"])
    figures = load_data(config)
    train_idx, val_idx = validation_split(figures.records, np.arange(len(figures.records)),
                                          fraction=config.data.val_fraction, seed=config.seed)
    Trainer(config, figures.records, figures.images, train_idx, val_idx, out, progress=False,
            log=None).fit(stop_after_epoch=1)
    return out


def test_a_finished_run_records_its_state(finished_run):
    state = read_run_state(finished_run)
    assert state is not None and state.status == "finished"
    assert (state.epochs_done, state.epochs_total) == (1, 1)
    assert "train" in state.command and str(finished_run) in state.command
    assert run_state_of(finished_run)[0] == "finished"


def test_an_interrupted_run_records_epochs_done(interrupted_run):
    state = read_run_state(interrupted_run)
    assert state is not None and state.status != "finished"
    assert (state.epochs_done, state.epochs_total) == (1, 2)


def test_a_killed_run_reads_as_interrupted(finished_run, tmp_path):
    """SIGKILL leaves status running; nobody holds the lock, so it is interrupted, not live."""
    run = tmp_path / "killed"
    shutil.copytree(finished_run, run)
    data = json.loads((run / STATE_FILE).read_text())
    data.update(status="running", epochs_done=1, epochs_total=4)
    (run / STATE_FILE).write_text(json.dumps(data))
    status, text = run_state_of(run)
    assert status == "interrupted" and "1 of 4" in text


def test_train_refuses_an_existing_run_without_resume_or_overwrite(finished_run, synth_dir, tmp_path, capsys):
    before = _digest(finished_run / "model.safetensors")
    code = main(_train_args(synth_dir, finished_run, tmp_path / "cache", epochs=2))
    assert code == 2
    line = _error(capsys)
    assert str(finished_run) in line and "--resume" in line and "--overwrite" in line
    assert _digest(finished_run / "model.safetensors") == before


def test_overwrite_replaces_a_run(finished_run, synth_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "metrics.jsonl").write_text('{"epoch": 99}\n')
    assert main(_train_args(synth_dir, run, tmp_path / "cache", "--overwrite")) == 0
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1]
    assert read_run_state(run).status == "finished"


def test_resume_without_a_run_is_an_error(synth_dir, tmp_path, capsys):
    out = tmp_path / "new"
    assert main(_train_args(synth_dir, out, tmp_path / "cache", "--resume")) == 2
    line = _error(capsys)
    assert str(out) in line and "no run to continue" in line
    assert not out.exists()


def test_second_train_into_a_folder_being_trained_fails_clearly(synth_dir, tmp_path, capsys):
    out = tmp_path / "busy"
    with training_run(out, epochs_total=3, command=["mitotype", "train"]):
        assert main(_train_args(synth_dir, out, tmp_path / "cache", "--resume")) == 2
        line = _error(capsys)
        assert "another process is training" in line
        assert main(_train_args(synth_dir, out, tmp_path / "cache", "--overwrite")) == 2
        assert "another process is training" in _error(capsys)
        with pytest.raises(MitotypeError, match="another process is training"), training_run(out, 3):
            pass
    assert read_run_state(out).status == "failed"  # the holder's block ended before its epochs were done


def test_a_failed_train_leaves_no_empty_out(synth_dir, tmp_path, capsys):
    bad = tmp_path / "zero.safetensors"
    bad.write_bytes(b"")
    out = tmp_path / "never"
    assert main(_train_args(synth_dir, out, tmp_path / "cache", "--set", f"model.weights={bad}")) == 2
    assert "empty" in _error(capsys)
    assert not out.exists()


def test_resume_finishes_an_interrupted_run(interrupted_run, synth_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(interrupted_run, run)
    assert run_state_of(run)[0] != "finished"
    cache = interrupted_run.parent / "cache"
    assert main(_train_args(synth_dir, run, cache, "--resume", epochs=2)) == 0
    state = read_run_state(run)
    assert (state.status, state.epochs_done) == ("finished", 2)


def _stack(root: Path) -> Path:
    folder = root / "input" / "images" / STACK_SLOT
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tifffile.imwrite(folder / "s.tiff", rng.integers(0, 255, (3, 128, 128, 3), dtype=np.uint8), photometric="rgb")
    return root / "input"


def _command(kind: str, model: Path, synth_dir: Path, tmp: Path) -> tuple[list[str], Path]:
    if kind == "predict":
        out = tmp / "p.csv"
        return ["predict", str(synth_dir), "--model", str(model), "--out", str(out), "--device", "cpu"], out
    if kind == "evaluate":
        out = tmp / "eval"
        return ["evaluate", "--model", str(model), "--data", str(synth_dir), "--format", "midog25", "--domain",
                "scanner", "--out", str(out), "--device", "cpu"], out / "results.json"
    if kind == "export":
        out = tmp / "m.tar.gz"
        return ["export", "--model", str(model), "--out", str(out)], out
    out = tmp / "output"
    return ["challenge", "--input-dir", str(_stack(tmp)), "--output-dir", str(out), "--model-dir", str(model),
            "--device", "cpu"], out / OUTPUT_NAME


@pytest.mark.parametrize("kind", ["predict", "evaluate", "export", "challenge"])
def test_commands_refuse_an_unfinished_run_unless_allowed(interrupted_run, synth_dir, tmp_path, capsys, kind):
    argv, out = _command(kind, interrupted_run, synth_dir, tmp_path)
    assert main(argv) == 2
    line = _error(capsys)
    assert str(interrupted_run) in line and "1 of 2 epochs" in line and "--allow-unfinished" in line
    assert not out.exists()
    assert main([*argv, "--allow-unfinished"]) == 0
    assert out.exists()
    assert "unfinished run" in capsys.readouterr().out


def test_a_model_folder_of_an_earlier_version_still_loads(finished_run, synth_dir, tmp_path, capsys):
    legacy = tmp_path / "legacy"
    shutil.copytree(finished_run, legacy)
    os.remove(legacy / STATE_FILE)
    assert run_state_of(legacy)[0] == "finished"
    assert main(["predict", str(synth_dir), "--model", str(legacy), "--out", str(tmp_path / "p.json"),
                 "--device", "cpu"]) == 0


def test_an_interrupted_run_of_an_earlier_version_is_recognised(interrupted_run, tmp_path):
    """Killed between epochs, an earlier version left resume state and a model without its final (TTA)
    threshold, and no run.json."""
    legacy = tmp_path / "legacy"
    shutil.copytree(interrupted_run, legacy)
    os.remove(legacy / STATE_FILE)
    meta = json.loads((legacy / "model.json").read_text())
    meta["threshold_tta"] = None
    (legacy / "model.json").write_text(json.dumps(meta))
    assert run_state_of(legacy)[0] == "interrupted"
    os.remove(legacy / "last_state.pt")  # a plain model folder (no resume state) is a finished model
    assert run_state_of(legacy)[0] == "finished"


def test_two_processes_and_a_kill_from_outside(synth_dir, tmp_path):
    """A real second process is refused while the first trains; SIGTERM leaves the run marked failed."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cache = tmp_path / "cache"
    argv = _train_args(synth_dir, out, cache, epochs=50)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first = subprocess.Popen([sys.executable, "-m", "mitotype", *argv], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = read_run_state(out) if (out / STATE_FILE).is_file() else None
            if state is not None and state.epochs_done >= 1:
                break
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            time.sleep(0.2)
        assert run_state_of(out)[0] == "running"
        second = subprocess.run([sys.executable, "-m", "mitotype", *_train_args(synth_dir, out, cache, "--resume")],
                                env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert "another process is training" in second.stderr and "Traceback" not in second.stderr
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode != 0
    state = read_run_state(out)
    assert state.status == "failed" and 1 <= state.epochs_done < 50
    assert run_state_of(out)[0] == "failed"
