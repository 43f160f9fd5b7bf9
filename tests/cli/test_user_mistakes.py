"""The smaller user mistakes and surprises of issue 20 (items 7 and 8), each through the real CLI."""

from __future__ import annotations

import csv
import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from mitotype.cli.main import main
from mitotype.models.artifact import save_model_artifact
from mitotype.serving.challenge import OUTPUT_NAME, STACK_SLOT
from tests.conftest import TINY_OVERRIDES, make_model_dir

REPO = Path(__file__).resolve().parents[2]


def _last_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    return lines[-1]


def _copy_synth(synth_dir: Path, dest: Path) -> Path:
    shutil.copytree(synth_dir, dest)
    return dest


def _label_csv(root: Path) -> Path:
    return next(root.glob("*.csv"))


# -- item 7 --------------------------------------------------------------------------------------


def test_old_challenge_output_does_not_survive_a_failed_run(tmp_path, capsys):
    model = make_model_dir(tmp_path / "model")
    folder = tmp_path / "input" / "images" / STACK_SLOT
    folder.mkdir(parents=True)
    tifffile.imwrite(folder / "s.tiff", np.zeros((2, 128, 128, 3), np.uint8), photometric="rgb")
    out = tmp_path / "output"
    argv = ["challenge", "--input-dir", str(tmp_path / "input"), "--output-dir", str(out),
            "--model-dir", str(model), "--device", "cpu"]
    assert main(argv) == 0 and (out / OUTPUT_NAME).is_file()
    (folder / "s.tiff").write_bytes(b"not a tiff")
    assert main(argv) == 2
    assert "s.tiff" in _last_error(capsys)
    assert not (out / OUTPUT_NAME).exists()


def test_csv_missing_image_id_is_reported_as_such(synth_dir, tmp_path, capsys):
    root = _copy_synth(synth_dir, tmp_path / "d")
    path = _label_csv(root)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "image_id"])
        writer.writeheader()
        writer.writerows({k: v for k, v in r.items() if k != "image_id"} for r in rows)
    assert main(["data", "inspect", str(root)]) == 2
    line = _last_error(capsys)
    assert "image_id" in line and "missing column" in line
    assert ".tiff" not in line


def test_train_suggests_only_options_it_has(synth_dir, tmp_path, capsys):
    from safetensors.torch import save_file

    from tests.models.conftest import save_random_backbone

    state = save_random_backbone("tiny-vit-reg4", tmp_path / "w.safetensors")
    state.pop(sorted(state)[0])
    save_file(state, str(tmp_path / "partial.safetensors"))
    sets = [x for o in [*TINY_OVERRIDES, "optim.epochs=1", f"data.cache_dir={tmp_path / 'c'}",
                        f"model.weights={tmp_path / 'partial.safetensors'}"] for x in ("--set", o)]
    assert main(["train", "--data", str(synth_dir), *sets, "--out", str(tmp_path / "run")]) == 2
    line = _last_error(capsys)
    assert "--set model.strict_weights=false" in line
    train_help = json.dumps([a.option_strings for a in _train_parser()._actions])
    for flag in re.findall(r"(?<![\w`])(--[a-z][a-z-]+)", line.split("`mitotype models check")[0]):
        assert flag in train_help or flag == "--set", flag


def _train_parser():
    import argparse

    from mitotype.cli import train

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    train.register(sub)
    return sub.choices["train"]


def test_zero_byte_png_message_names_the_problem_not_a_buffer(synth_dir, tmp_path, capsys):
    root = _copy_synth(synth_dir, tmp_path / "d")
    (root / "images" / "1.png").write_bytes(b"")
    assert main(["data", "inspect", str(root)]) == 2
    line = _last_error(capsys)
    assert "1.png" in line and "empty" in line and "BytesIO" not in line
    (root / "images" / "1.png").write_bytes(b"GIF87a not really")
    assert main(["data", "inspect", str(root)]) == 2
    assert "BytesIO" not in _last_error(capsys)


def test_converted_images_are_counted_once(synth_dir, tmp_path, capsys):
    root = _copy_synth(synth_dir, tmp_path / "d")
    rgb = np.asarray(Image.open(root / "images" / "1.png").convert("RGB"))
    Image.fromarray(rgb).convert("RGBA").save(root / "images" / "1.png")
    Image.fromarray(rgb).convert("L").save(root / "images" / "2.png")
    Image.fromarray(rgb[:100, :90]).save(root / "images" / "3.png")
    model = make_model_dir(tmp_path / "model")
    assert main(["predict", str(root), "--model", str(model), "--out", str(tmp_path / "p.csv"),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if "converted to RGB" in line]
    assert len(notes) == 1
    assert "2 converted to RGB" in notes[0] and "1 not 128x128" in notes[0]


@pytest.mark.parametrize("name", ["p.txt", "p", "p.csv.bak"])
def test_predict_refuses_an_output_type_it_does_not_write(synth_dir, tmp_path, capsys, name):
    model = make_model_dir(tmp_path / "model")
    out = tmp_path / name
    assert main(["predict", str(synth_dir), "--model", str(model), "--out", str(out), "--device", "cpu"]) == 2
    line = _last_error(capsys)
    assert str(out) in line and ".csv" in line and ".json" in line
    assert not out.exists()


@pytest.mark.parametrize("report", ["blocker/gallery.html", "gallery.png"], ids=["under-a-file", "not-html"])
def test_predict_checks_the_report_path_before_the_work(synth_dir, tmp_path, capsys, report):
    """A bad --report path used to fail only after the CSV was written: an error with an output left behind."""
    (tmp_path / "blocker").write_text("x")
    model = make_model_dir(tmp_path / "model")
    out = tmp_path / "p.csv"
    code = main(["predict", str(synth_dir), "--model", str(model), "--out", str(out), "--device", "cpu",
                 "--report", str(tmp_path / report)])
    assert code == 2
    line = _last_error(capsys)
    assert str(tmp_path / report.split("/")[0]) in line
    assert not out.exists() and not (tmp_path / "gallery.png").exists()


def test_predict_refuses_to_write_over_its_own_input(synth_dir, tmp_path, capsys):
    """`predict labels.csv --out labels.csv` used to replace the label file with the predictions."""
    data = _copy_synth(synth_dir, tmp_path / "data")
    labels = _label_csv(data)
    before = labels.read_bytes()
    model = make_model_dir(tmp_path / "model")
    spelled = data / ".." / "data" / labels.name  # the same file under another spelling
    assert main(["predict", str(labels), "--model", str(model), "--out", str(spelled), "--device", "cpu"]) == 2
    line = _last_error(capsys)
    assert str(spelled) in line and "also an input" in line
    assert labels.read_bytes() == before
    # the dataset folder given, its label file found by the reader: refused before any prediction too
    assert main(["predict", str(data), "--model", str(model), "--out", str(labels), "--device", "cpu"]) == 2
    assert "also an input" in _last_error(capsys) and labels.read_bytes() == before


def _model_with_two_thresholds(path: Path) -> Path:
    import torch

    from mitotype.models.classifier import build_classifier
    from mitotype.training.config import load_config

    torch.manual_seed(0)
    config = load_config(overrides=TINY_OVERRIDES)
    model = build_classifier(config.model, num_domains=0)
    save_model_artifact(path, model, config, threshold=0.31, threshold_tta=0.67, metrics={}, domains=[])
    return path


@pytest.mark.parametrize(("flags", "shown"), [([], "0.670"), (["--no-tta"], "0.310")])
def test_export_prints_the_threshold_the_container_uses(tmp_path, capsys, flags, shown):
    model = _model_with_two_thresholds(tmp_path / "model")
    assert main(["export", "--model", str(model), "--out", str(tmp_path / "m.tar.gz"), *flags]) == 0
    out = capsys.readouterr().out
    assert f"threshold {shown}" in out


# -- item 8 --------------------------------------------------------------------------------------


def test_progress_postfix_does_not_warn_about_requires_grad(synth_figures, tmp_path):
    from mitotype.evaluation.splits import validation_split
    from mitotype.training.config import load_config
    from mitotype.training.trainer import Trainer

    config = load_config(overrides=[*TINY_OVERRIDES, "optim.epochs=1"])
    train_idx, val_idx = validation_split(synth_figures.records, np.arange(len(synth_figures.records)),
                                          fraction=0.25, seed=0)
    trainer = Trainer(config, synth_figures.records, synth_figures.images, train_idx, val_idx, tmp_path,
                      progress=False, log=None)
    trainer._build()

    class Bar:
        def update(self, _n: int) -> None:
            pass

        def set_postfix(self, **_kw: object) -> None:
            pass

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer._train_epoch(0, trainer._sampling_weights(), Bar())


def test_no_progress_bars_when_output_is_not_a_terminal(synth_dir, tmp_path, capfd):
    sets = [x for o in [*TINY_OVERRIDES, "optim.epochs=1", f"data.cache_dir={tmp_path / 'c'}"] for x in ("--set", o)]
    assert main(["train", "--data", str(synth_dir), *sets, "--out", str(tmp_path / "run")]) == 0
    captured = capfd.readouterr()
    assert "\r" not in captured.err and "it/s" not in captured.err
    assert "epoch 1/1 loss" in captured.out  # the per-epoch log line stays


def test_inspect_of_a_labels_only_csv_points_to_check_none(synth_dir, tmp_path, capsys):
    labels = tmp_path / "labels-only"
    labels.mkdir()
    shutil.copy(_label_csv(synth_dir), labels / "labels.csv")
    assert main(["data", "inspect", str(labels / "labels.csv")]) == 2
    assert "--check none" in _last_error(capsys)
    assert main(["data", "inspect", str(labels / "labels.csv"), "--check", "none"]) == 0


def test_readme_session_says_how_to_get_the_command():
    text = (REPO / "README.md").read_text()
    session = text[text.index("## A session"):]
    first_use = session.index("mitotype data inspect")
    assert re.search(r"source \.venv/bin/activate|\.venv/bin/mitotype", session[:first_use])


@pytest.fixture(scope="module")
def evaluated(synth_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    model = make_model_dir(root / "model")
    return model, root


def test_evaluate_tta_is_recorded_the_same_everywhere(synth_dir, evaluated, capsys):
    model, root = evaluated
    out = root / "tta"
    assert main(["evaluate", "--model", str(model), "--data", str(synth_dir), "--format", "midog25",
                 "--domain", "scanner", "--out", str(out), "--device", "cpu", "--tta"]) == 0
    assert json.loads((out / "results.json").read_text())["tta"] is True
    with open(out / "predictions.csv", newline="") as f:
        values = {row["tta"] for row in csv.DictReader(f)}
    assert values == {"True"}


def test_evaluate_prints_sensitivity_specificity_and_threshold(synth_dir, evaluated, capsys):
    model, root = evaluated
    assert main(["evaluate", "--model", str(model), "--data", str(synth_dir), "--format", "midog25",
                 "--domain", "scanner", "--out", str(root / "plain"), "--device", "cpu",
                 "--threshold", "0.42"]) == 0
    out = capsys.readouterr().out
    results = json.loads((root / "plain" / "results.json").read_text())
    pooled = results["summary"]["pooled"]
    assert re.search(r"sensitivity \d\.\d{3}", out) and re.search(r"specificity \d\.\d{3}", out)
    assert f"sensitivity {pooled['sensitivity']:.3f}" in out
    assert "threshold 0.420" in out


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`mitotype ... | head` closes the pipe early: no traceback, the status a shell expects (141)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "mitotype", "models", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # as head does once it has its lines: before this command writes its table
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.wait(timeout=60) in (0, 141)
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_cv_refuses_k_with_leave_one_domain_out_and_unknown_folds(synth_dir, tmp_path, capsys):
    """``--k`` counts k-fold folds; under leave-one-domain-out the domains are the folds, so it is an error,
    not an ignored flag, and nothing is created."""
    out = tmp_path / "cv"
    assert main(["cv", "--data", str(synth_dir), "--k", "3", "--out", str(out)]) == 2
    assert "--k applies to --scheme kfold" in _last_error(capsys)
    assert not out.exists()
    # a fold that does not exist is refused before the output folder is made
    assert main(["cv", "--data", str(synth_dir), "--folds", "nosuch", "--out", str(out),
                 *(arg for o in TINY_OVERRIDES for arg in ("--set", o))]) == 2
    assert "unknown fold(s) ['nosuch']" in _last_error(capsys)
    assert not out.exists()
