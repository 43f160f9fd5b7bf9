"""``python -m mitotype`` is the same command as the console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def test_python_dash_m_runs_the_cli_and_reports_user_errors(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    ok = subprocess.run([sys.executable, "-m", "mitotype", "data", "synth", "--out", str(tmp_path / "syn"),
                         "--n-per-domain", "4", "--domains", "1"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "syn" / "synthetic_midog25.csv").is_file()
    bad = subprocess.run([sys.executable, "-m", "mitotype", "data", "inspect", str(tmp_path / "missing")],
                         capture_output=True, text=True, env=env)
    assert bad.returncode != 0
    assert "missing" in bad.stderr and "Traceback" not in bad.stderr
