"""Classifying with a current ONNX graph never imports torch, and the base install's commands work or say
in one line what they need.

Each check runs in a fresh Python process and reads ``sys.modules`` after the command. "Base install" runs
block every module of the training extra (``sys.modules[name] = None``: importing one raises, and
:func:`mitotype.extras.importable` reports it missing), which is what ``pip install mitotype`` leaves out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mitotype.extras import TRAINING_MODULES
from tests.conftest import REPO_ROOT

STACK = Path("midog25_t2_stack/input")

_SCRIPT = """
import json, sys
for name in {blocked!r}:
    sys.modules[name] = None
from mitotype.cli.main import main
codes = [main(argv) for argv in {commands!r}]
print(json.dumps({{"codes": codes, "modules": sorted(m for m in sys.modules if sys.modules[m] is not None)}}))
"""


def _run(commands: list[list[str]], blocked: frozenset[str] = frozenset(), cwd: Path | None = None) -> dict:
    """The exit codes of ``commands`` run one after another in one fresh process, its modules, and its stderr."""
    script = _SCRIPT.format(blocked=sorted(blocked), commands=commands)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["stderr"] = proc.stderr
    result["stdout"] = proc.stdout
    return result


@pytest.fixture(scope="module")
def figures(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 real AMi-Br patches in class folders (labels for evaluate, read by the folder reader)."""
    root = tmp_path_factory.mktemp("light")
    for kind in ("normal", "atypical"):
        (root / "data" / kind).mkdir(parents=True)
        for png in sorted((shared_data / "amibr" / "patches" / kind).glob("*.png"))[:6]:
            shutil.copy(png, root / "data" / kind / png.name)
    return root


def test_import_mitotype_load_loads_neither_torch_nor_training_code() -> None:
    code = ("import sys, mitotype; mitotype.load; mitotype.Classifier; mitotype.Predictions; "
            "print(sorted(m for m in sys.modules if m.startswith(('torch', 'mitotype.training', "
            "'mitotype.experiments', 'sklearn', 'timm'))))")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "[]"


def _slide(shared_data: Path, root: Path) -> tuple[Path, Path]:
    """A small tiled pyramidal TIFF at 0.25 um/px holding 6 real figures, and their Track 1 points (mm)."""
    from tests.wsi_factory import Figure, amibr_patches, background, grid_centres, place, track1_json, write_pyramid

    centres = grid_centres(900, 700, 6)
    figures = [Figure(patch, label, uid, x, y)
               for (patch, label, uid), (x, y) in zip(amibr_patches(shared_data, 6), centres)]
    slide = write_pyramid(root / "S1.tif", place(background(900, 700, (40, 40, 860, 660)), figures), mpp=0.25)
    return slide, track1_json(root / "S1.json", centres, 0.25, [0.9] * len(centres))


@pytest.mark.shared
@pytest.mark.slow
def test_predict_evaluate_challenge_and_slides_on_the_shipped_model_never_import_torch(figures: Path,
                                                                                       shared_data: Path) -> None:
    out = figures / "out-full"
    slide, points = _slide(shared_data, figures)
    commands = [
        ["slides", str(slide), "--points", str(points), "--out", str(out / "slides"), "--tta"],
        ["predict", str(figures / "data"), "--out", str(out / "p.csv"), "--tta"],
        ["predict", str(shared_data / STACK / "images/stacked-histopathology-roi-cropouts/stack_5.tiff"),
         "--out", str(out / "stack.json")],
        ["challenge", "--input-dir", str(shared_data / STACK), "--output-dir", str(out / "challenge"),
         "--model-dir", "shipped"],
        ["evaluate", "--model", str(_shipped()), "--data", str(figures / "data"), "--out", str(out / "eval")],
    ]
    result = _run(commands)
    assert result["codes"] == [0, 0, 0, 0, 0], result["stderr"]
    assert not [m for m in result["modules"] if m == "torch" or m.startswith("torch.")]
    assert "S1,ok,6," in (out / "slides" / "cohort.csv").read_text()
    assert "onnxruntime" in result["modules"]
    assert len(json.loads((out / "challenge" / "multiple-mitotic-figure-classification.json").read_text())) == 16
    assert (out / "eval" / "results.json").is_file() and (out / "eval" / "gallery.html").is_file()


@pytest.mark.shared
@pytest.mark.slow
def test_the_base_install_classifies_evaluates_and_scores(figures: Path, shared_data: Path) -> None:
    from tests.serving.test_score import build_tree

    out = figures / "out-base"
    truth, outputs, _ = build_tree(figures / "score")
    commands = [
        ["predict", str(figures / "data"), "--out", str(out / "p.csv")],
        ["challenge", "--input-dir", str(shared_data / STACK), "--output-dir", str(out / "challenge"),
         "--model-dir", "shipped", "--tta", "on"],
        ["evaluate", "--model", str(_shipped()), "--data", str(figures / "data"), "--out", str(out / "eval")],
        ["score", "--ground-truth", str(truth), "--predictions", str(outputs)],
    ]
    result = _run(commands, blocked=TRAINING_MODULES)
    assert result["codes"] == [0, 0, 0, 0], result["stderr"]
    assert "Traceback" not in result["stderr"]
    assert "note: report.html holds the tables only: the plots need matplotlib and scikit-learn" in result["stdout"]
    assert "The plots need matplotlib and scikit-learn" in (out / "eval" / "report.html").read_text()
    summary = json.loads((out / "eval" / "results.json").read_text())["summary"]
    assert summary["n_figures"] == 12 and summary["pooled"]["roc_auc"] is not None


def test_commands_of_the_training_extra_say_so_in_one_line(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    commands = [
        ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")],
        ["cv", "--data", str(tmp_path), "--out", str(tmp_path / "cv")],
        ["ablate", "--data", str(tmp_path), "--out", str(tmp_path / "ab")],
        ["holdout", "--data", str(tmp_path), "--out", str(tmp_path / "ho")],
        ["demo", "--out", str(tmp_path / "demo")],
        ["export", "--model", str(model), "--out", str(tmp_path / "m.tar.gz")],
        ["models", "list"],
        ["models", "onnx", str(model)],
        ["models", "ship", str(model), "--out", str(tmp_path / "shipped")],  # it said 'mitotype models needs'
    ]
    result = _run(commands, blocked=TRAINING_MODULES)
    assert result["codes"] == [2] * len(commands)
    lines = result["stderr"].strip().splitlines()
    assert lines == [f"error: mitotype {name} needs the training extra: pip install 'mitotype[train]'" for name in
                     ("train", "cv", "ablate", "holdout", "demo", "export", "models list", "models onnx",
                      "models ship")]
    assert not (tmp_path / "run").exists()


def test_predict_that_needs_pytorch_says_why_in_one_line(tmp_path: Path) -> None:
    from tests.conftest import make_model_dir

    model = make_model_dir(tmp_path / "model")  # no model.onnx: PyTorch runs it
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(tmp_path / "fig.png")
    base = ["predict", str(tmp_path / "fig.png"), "--out", str(tmp_path / "p.csv")]
    commands = [[*base, "--model", str(model)], [*base, "--runtime", "torch"], [*base, "--adapt-bn", "domain"]]
    result = _run(commands, blocked=TRAINING_MODULES)
    assert result["codes"] == [2, 2, 2]
    lines = result["stderr"].strip().splitlines()
    assert lines[0] == (f"error: running {model} (no current model.onnx, so PyTorch runs it) needs the training "
                        "extra: pip install 'mitotype[train]'")
    assert lines[1] == "error: runtime torch needs the training extra: pip install 'mitotype[train]'"
    assert lines[2] == ("error: BatchNorm adaptation (adapt-bn domain, in PyTorch) needs the training extra: "
                        "pip install 'mitotype[train]'")
    assert not (tmp_path / "p.csv").exists()


def test_the_base_install_depends_on_no_training_library() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    base = {_name(d) for d in project["dependencies"]}
    assert base == {"numpy", "pillow", "onnxruntime", "tifffile", "safetensors"}
    extras = project["optional-dependencies"]
    assert {"torch", "torchvision", "timm", "peft", "scikit-learn", "matplotlib", "pyyaml", "tqdm"} <= {
        _name(d) for d in extras["train"]}
    assert "mitotype[train]" in extras["dev"] and {"mkdocs", "mkdocstrings[python]"} <= {
        _name(d) for d in extras["dev"]}


def _name(requirement: str) -> str:
    """``torch>=2.3`` -> ``torch`` (extras kept: ``mkdocstrings[python]``)."""
    for mark in ("<", ">", "=", "!", "~", ";", " "):
        requirement = requirement.split(mark)[0]
    return requirement.lower()


def _shipped() -> Path:
    from mitotype.models.shipped import get_shipped_model

    return get_shipped_model().folder


def test_slides_run_on_the_base_install_with_the_wsi_extra_and_name_it_without(tmp_path: Path) -> None:
    """What docs/slides.md says to install (the base install and `mitotype[wsi]`, which brings scikit-image and
    with it scipy, but not tqdm): `mitotype slides` said it needed the training extra (its progress bar's tqdm),
    and without the wsi extra it ended in a scikit-image ImportError traceback (outside probe, a fresh venv)."""
    from tests.wsi_factory import background, track1_json, write_pyramid

    pytest.importorskip("skimage", reason="scikit-image not installed (the wsi extra)")
    slide = write_pyramid(tmp_path / "S.tif", background(640, 640, (64, 64, 576, 576)), mpp=0.25, levels=2, tile=128)
    points = track1_json(tmp_path / "S.json", [(200.0, 200.0), (400.0, 300.0)], 0.25, [0.9, 0.9])
    argv = ["slides", str(slide), "--points", str(points), "--out"]
    with_wsi = _run([[*argv, str(tmp_path / "out")]], blocked=TRAINING_MODULES - {"scipy"})
    assert with_wsi["codes"] == [0], with_wsi["stderr"]
    assert "S,ok,2," in (tmp_path / "out" / "cohort.csv").read_text()
    base = _run([[*argv, str(tmp_path / "out-base")]], blocked=TRAINING_MODULES | {"skimage", "openslide"})
    assert base["codes"] == [2]
    assert base["stderr"] == ("error: the slides' tissue mask (scikit-image) needs the wsi extra: "
                              "pip install 'mitotype[wsi]'\n")
    assert not (tmp_path / "out-base").exists()
