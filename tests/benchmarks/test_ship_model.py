"""The shipped model's card and thresholds follow the threshold rule it ships with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_benchmark

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def test_the_lodo_table_uses_the_rule_of_the_shipped_thresholds() -> None:
    ship = load_benchmark("ship_model")
    result = RESULTS / "lodo_transfer_224_full_s0.json"
    summary = json.loads(result.read_text())["figures"]["summary"]
    for rule, name in (("val-balanced-accuracy", "validation"), ("val-platt", "platt")):
        text, args = ship.lodo_section(result, rule)
        assert f"(`{rule}`)" in text and args.startswith(" --lodo ")
        pooled = summary[f"single|{name}"]["pooled_balanced_accuracy"]
        assert f"| {pooled:.3f} |" in text.split("| pooled |")[1].splitlines()[0]


def test_rechosen_thresholds_come_from_the_runs_entry(tmp_path: Path) -> None:
    ship = load_benchmark("ship_model")
    result = tmp_path / "thr.json"
    rows = {view: {"platt": {"threshold": t}, "validation": {"threshold": 0.5}}
            for view, t in (("single", 0.41), ("tta", 0.38))}
    result.write_text(json.dumps({"figures": {"runs": {str(tmp_path / "run"): rows}}}))
    got = ship.rechosen_thresholds(result, tmp_path / "run", "val-platt")
    assert (got.rule, got.threshold, got.threshold_tta) == ("val-platt", 0.41, 0.38)
    with pytest.raises(SystemExit, match="no thresholds for"):
        ship.rechosen_thresholds(result, tmp_path / "other", "val-platt")


def test_the_shipped_card_is_the_packages_card_made_again_from_its_recorded_figures() -> None:
    """The card template lives in the package now; filled with the shipped model's recorded figures it gives the
    committed card, byte for byte."""
    ship = load_benchmark("ship_model")
    folder = Path(__file__).resolve().parents[2] / "src" / "mitotype" / "models" / "shipped" / "amibr-effnet-lite0-224"
    meta = json.loads((folder / "model.json").read_text())
    recorded = json.loads((RESULTS / "shipped_model.json").read_text())["figures"]
    text = ship.card_text(folder.name, meta, ship.recorded_run_scores(meta, recorded), recorded["test_packed_onnx"],
                          RESULTS / "lodo_transfer_224_full_s0.json", recorded["train_command"],
                          Path(meta["shipped_from"]), RESULTS / "calibration_shipped.json",
                          RESULTS / "lodo_yardstick_224_s0.json")
    assert text == (folder / "MODEL_CARD.md").read_text()
    # the card says what the prevalence-shift yardstick supports: AdaBN is no longer recommended
    assert "### At fewer atypical figures" in text and "is not advised" in text
    assert "when every input figure\ncomes from one scanner or lab, `--tta --adapt-bn domain`" not in text
