"""benchmarks/bench_slides.py runs end to end in its quick mode (a few real figures, three slides)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.shared
def test_bench_slides_quick(shared_data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "MITOTYPE_SHARED_DATA": str(shared_data)}
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_slides.py"), "--quick",
                           "--results-dir", str(tmp_path)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads((tmp_path / "slides_quick.json").read_text())["figures"]
    assert figures["slide"]["figures"] == 40 and figures["slide"]["ratio_slides_over_predict"] > 0
    assert figures["cohort_rerun"]["slides"] == 3 and figures["cohort_rerun"]["seconds"] > 0
