"""Shared fixtures: the real data in ../shared (skipped when absent unless CI=true)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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
