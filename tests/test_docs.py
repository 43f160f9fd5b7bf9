"""The API reference (docs/api, generated from the docstrings by mkdocstrings) builds offline with warnings as
errors, and holds every public name with its docstring."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def _docs_tools() -> None:
    missing = [m for m in ("mkdocs", "mkdocstrings_handlers.python") if importlib.util.find_spec(m.split(".")[0])
               is None or (m.endswith("python") and importlib.util.find_spec(m) is None)]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {missing} are not installed (the dev extra brings them)")
        pytest.skip(f"{missing} not installed: pip install -e '.[dev]'")


def test_the_api_reference_builds_strictly_and_documents_the_public_names(tmp_path: Path) -> None:
    _docs_tools()
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(REPO_ROOT / "mkdocs.yml"), "--site-dir", str(site)], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr
    page = (site / "index.html").read_text()
    for name in ("load", "Classifier", "Predictions", "read_figures", "FigureBatch", "MitotypeError"):
        assert f'id="mitotype.api.{name}"' in page or f'id="mitotype.errors.{name}"' in page, name
    assert "Load trained model(s) for classifying figures in Python." in page  # docstrings, not just names
    assert "p(atypical) and the decision for each figure." in page
