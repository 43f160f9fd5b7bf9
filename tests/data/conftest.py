"""Fixtures of the data-layer tests (factories live in ``datafactories.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def amibr(shared_data: Path):
    """The real AMi-Br, read once with the full pixel check."""
    from mitotype.data.readers import read_dataset

    return read_dataset(shared_data / "amibr")
