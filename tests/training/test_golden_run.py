"""A fixed-seed run on synthetic data, recorded before the package was re-layered: the same commands
must keep giving the very same figures (bit-identical on the CPU).

Two recipes, the ``full-cpu`` preset (every strategy on) and the ``plain`` preset, on the tiny ViT with
random weights: per-epoch metrics, thresholds and test probabilities (single view and 8-view TTA).
Regenerate (only after a deliberate change of behaviour) with
``python -m tests.training.test_golden_run --write``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "assets" / "golden_run.json"
OVERRIDES = [
    "model.backbone=tiny-vit-reg4",
    "model.input_size=56",
    "optim.epochs=2",
    "optim.batch_size=8",
    "optim.eval_batch_size=32",
    "optim.device=cpu",
    "data.val_fraction=0.25",
    "strategies.hard_mining.every_n_epochs=1",
]
"""The presets shrunk to seconds: tiny model, 2 epochs, hard mining due at the second epoch."""
# Wall times vary run to run; everything else in a metrics row must not.
TIMING_KEYS = ("seconds_mining", "seconds_train", "seconds_validation", "train_images_per_second")


def run_golden(work: Path) -> dict[str, Any]:
    """Train both recipes on a small synthetic set and collect every figure the run produces."""
    from mitotype.data.synth import write_synthetic
    from mitotype.evaluation.splits import validation_split
    from mitotype.models.artifact import load_model_artifact
    from mitotype.models.predict import predict_proba
    from mitotype.training.config import load_config
    from mitotype.training.inputs import load_figures
    from mitotype.training.trainer import Trainer

    write_synthetic(work / "data", n_per_domain=16, seed=5)
    figures = load_figures(work / "data", fmt="midog25", domain=["scanner"], cache_dir=work / "cache")
    records = figures.records
    rest, test_idx = validation_split(records, np.arange(len(records)), fraction=0.25, seed=1)
    out: dict[str, Any] = {"test_uids": [records[i].uid for i in test_idx]}
    for preset in ("full-cpu", "plain"):
        config = load_config(preset=preset, overrides=OVERRIDES)
        train_idx, val_idx = validation_split(records, rest, fraction=config.data.val_fraction, seed=config.seed)
        result = Trainer(config, records, figures.images, train_idx, val_idx, work / preset,
                         progress=False, log=None).fit()
        history = [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in result.history]
        loaded = load_model_artifact(work / preset)
        images = figures.images[test_idx]
        out[preset] = {
            "history": history,
            "best_epoch": result.best_epoch,
            "threshold": loaded.meta["threshold"],
            "threshold_tta": loaded.meta["threshold_tta"],
            "test_p": [float(p) for p in predict_proba(loaded.model, images, batch_size=32)],
            "test_p_tta": [float(p) for p in predict_proba(loaded.model, images, batch_size=32, tta=True)],
        }
    return out


@pytest.mark.slow
def test_the_recorded_run_is_reproduced_exactly(tmp_path):
    expected = json.loads(GOLDEN.read_text())
    got = json.loads(json.dumps(run_golden(tmp_path)))  # the same JSON round trip as the recording
    assert got["test_uids"] == expected["test_uids"]
    for preset in ("full-cpu", "plain"):
        for key in ("history", "best_epoch", "threshold", "threshold_tta", "test_p", "test_p_tta"):
            assert got[preset][key] == expected[preset][key], f"{preset}: {key} changed"


if __name__ == "__main__":
    if "--write" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            GOLDEN.write_text(json.dumps(run_golden(Path(tmp)), indent=1) + "\n")
        sys.stdout.write(f"wrote {GOLDEN}\n")
