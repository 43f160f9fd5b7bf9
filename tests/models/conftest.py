"""Fixtures for the models layer: tiny random checkpoints and a fake Hugging Face cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mitotype.models.registry import create_backbone, get_backbone_spec

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def save_random_backbone(name: str, path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights of backbone ``name`` saved as safetensors; returns the state dict."""
    torch.manual_seed(seed)
    state = {
        k: v.contiguous().clone() for k, v in create_backbone(get_backbone_spec(name)).state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return state


def make_fake_hub_cache(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """Lay out ``cache`` as huggingface_hub does: ``models--org--name/{refs/main, snapshots/<commit>/}``."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / FAKE_COMMIT
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(FAKE_COMMIT)
    for name, src in files.items():
        (snapshot / name).write_bytes(src.read_bytes())
    (snapshot / "config.json").write_text(json.dumps({"architecture": "vit_giant_patch14_reg4_dinov2"}))
    return snapshot


@pytest.fixture
def fake_hub_cache() -> Callable[[Path, str, dict[str, Path]], Path]:
    """:func:`make_fake_hub_cache`, as a fixture (test modules do not import conftest)."""
    return make_fake_hub_cache


@pytest.fixture
def random_backbone_file() -> Callable[..., dict[str, torch.Tensor]]:
    """:func:`save_random_backbone`, as a fixture."""
    return save_random_backbone


@pytest.fixture(scope="session")
def tiny_vit_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random ``tiny-vit-reg4`` weights as a safetensors file."""
    path = tmp_path_factory.mktemp("tiny_vit") / "model.safetensors"
    save_random_backbone("tiny-vit-reg4", path)
    return path


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Never touch the network or the user's cache: an empty cache, offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
