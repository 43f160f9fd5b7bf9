"""The torch.hub entry point loads the shipped classifier from the checkout, offline, as mitotype.load() does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

_SCRIPT = """
import json, sys
import numpy as np
import torch
classifier = torch.hub.load({repo!r}, "amibr_effnet_lite0", source="local", device="cpu")
import mitotype
figures = np.random.default_rng(0).integers(0, 255, (6, 128, 128, 3), dtype=np.uint8)
hub = classifier.predict(figures, tta=True)
direct = mitotype.load(device="cpu").predict(figures, tta=True)
print(json.dumps({{"type": type(classifier).__name__, "module": mitotype.__file__, "engine": classifier.engine,
                  "hub": hub.p_atypical.tolist(), "direct": direct.p_atypical.tolist(),
                  "thresholds": [hub.threshold, direct.threshold], "models": [str(m) for m in classifier.models]}}))
"""


@pytest.mark.slow
def test_the_hub_entry_point_loads_the_shipped_classifier_offline(tmp_path) -> None:
    pytest.importorskip("torch", reason="torch.hub comes with torch (the training extra)")
    from mitotype.models.metadata import write_calibration
    from mitotype.models.shipped import get_shipped_model

    # a folder named like the shipped model in the working directory (here: its raw-score twin) was loaded instead
    shadow = Path(shutil.copytree(get_shipped_model().folder, tmp_path / "amibr-effnet-lite0-224"))
    write_calibration(shadow, {})
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # mitotype found through the checkout only
    env.update(HF_HUB_OFFLINE="1", TORCH_HOME=str(tmp_path / "torch-home"), NO_PROXY="*",
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")  # any download would fail
    proc = subprocess.run([sys.executable, "-c", _SCRIPT.format(repo=str(REPO_ROOT))], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["type"] == "Classifier" and got["engine"] == "onnx"
    assert got["module"].startswith(str(REPO_ROOT / "src"))
    assert got["hub"] == got["direct"] and got["thresholds"][0] == got["thresholds"][1]
    assert got["models"][0].endswith("amibr-effnet-lite0-224") and not got["models"][0].startswith(str(tmp_path))
