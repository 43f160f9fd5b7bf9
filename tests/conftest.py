"""Shared fixtures: the real data in ../shared (skipped when absent unless CI=true)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO_ROOT / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """A script of ``benchmarks/`` imported as a module (its folder on ``sys.path`` for ``_common``), so that
    tests reach its functions without running it."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_data_dir() -> Path:
    return Path(os.environ.get("MITOTYPE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding ``amibr/``, ``midog25/`` and the challenge examples."""
    path = shared_data_dir()
    if not (path / "amibr" / "AMI-BR.csv").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the shared data is missing at {path} (set MITOTYPE_SHARED_DATA)")
        pytest.skip(f"real data not found at {path}; set MITOTYPE_SHARED_DATA to run this test")
    return path


TINY_OVERRIDES = [
    "model.backbone=tiny-vit-reg4",
    "model.lora.rank=4",
    "optim.epochs=2",
    "optim.batch_size=16",
    "optim.eval_batch_size=64",
    "optim.device=cpu",
    "optim.warmup_epochs=0",
    "data.format=midog25",
    "data.domain=[scanner]",
    "data.val_fraction=0.25",
    "strategies.hard_mining.every_n_epochs=1",
]
"""A configuration that trains the tiny ViT with LoRA and every strategy in seconds."""


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A small synthetic 4-domain dataset in the MIDOG 2025 layout (shared by the session)."""
    from mitotype.data.synth import write_synthetic

    out = tmp_path_factory.mktemp("synth")
    write_synthetic(out, n_per_domain=24, seed=3)
    return out


@pytest.fixture(scope="session")
def synth_figures(synth_dir, tmp_path_factory):
    from mitotype.training.inputs import load_figures

    return load_figures(synth_dir, fmt="midog25", domain=["scanner"], cache_dir=tmp_path_factory.mktemp("cache"))


def make_model_dir(path: Path, bias: float | None = None, threshold: float = 0.5, overrides=(),
                   calibration: dict | None = None, threshold_tta: float | None = None) -> Path:
    """An untrained tiny model artifact; ``bias`` forces the head toward atypical (+) or normal (-);
    ``calibration``: ``{"single" | "tta": Calibration}`` stored as a trained model stores it."""
    import torch

    from mitotype.models.artifact import save_model_artifact
    from mitotype.models.classifier import build_classifier
    from mitotype.training.config import load_config

    torch.manual_seed(0)
    config = load_config(overrides=[*TINY_OVERRIDES, *overrides])
    model = build_classifier(config.model, num_domains=0)
    if bias is not None:
        with torch.no_grad():
            for p in model.head.parameters():
                p.zero_()
            last = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1]
            last.bias.fill_(bias)
    save_model_artifact(path, model, config, threshold=threshold, metrics={}, domains=[], calibration=calibration,
                        threshold_tta=threshold_tta)
    return path
