"""A model file whose stored metadata is damaged, hand-edited or does not fit its tensors is refused in one
line naming the file, by every command that loads models (not a traceback, not a run with a NaN threshold)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mitotype.cli.main import main
from mitotype.errors import MitotypeError, WeightsError
from mitotype.models.artifact import load_model_artifact, read_artifact_meta
from tests.conftest import make_model_dir


def _rewrite_meta(model: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    """Store ``edit(meta)`` (a dict, or raw text) as the model file's metadata; the tensors stay."""
    file = model / "model.safetensors"
    with safe_open(str(file), framework="pt") as fh:
        meta = json.loads(fh.metadata()["mitotype"])
    state = load_file(str(file))
    new = edit(meta)
    save_file(state, str(file), metadata={"mitotype": new if isinstance(new, str) else json.dumps(new)})


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(meta: dict[str, Any]) -> dict[str, Any]:
        *parents, last = path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        if value is _DROP:
            node.pop(last)
        else:
            node[last] = value
        return meta
    return edit


_DROP = object()

DAMAGED = {
    "not-json": (lambda meta: "{not json", "not valid JSON"),
    "a-list": (lambda meta: "[1, 2]", "not an object"),
    "no-config": (_set("config", None), "'config'"),
    "no-threshold": (_set("threshold", _DROP), "'threshold'"),
    "threshold-text": (_set("threshold", "high"), "'threshold'"),
    "threshold-nan": (_set("threshold", float("nan")), "'threshold'"),
    "threshold-above-1": (_set("threshold", 7.0), "'threshold'"),
    "threshold-tta-text": (_set("threshold_tta", "x"), "'threshold_tta'"),
    "num-domains-text": (_set("num_domains", "x"), "'num_domains'"),
    "seed-text": (_set("config.seed", "x"), "'config.seed'"),
    "unknown-backbone": (_set("config.model.backbone", "no-such-net"), "no-such-net"),
    "input-size-out-of-range": (_set("config.model.input_size", -5), "model.input_size"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_damaged_metadata_is_one_line_naming_the_file(case, tmp_path):
    model = make_model_dir(tmp_path / "model")
    edit, token = DAMAGED[case]
    _rewrite_meta(model, edit)
    with pytest.raises(MitotypeError) as caught:
        read_artifact_meta(model)
    assert str(model / "model.safetensors") in str(caught.value)
    assert token in str(caught.value)


def test_config_that_does_not_fit_the_weights_names_the_file(tmp_path):
    """A LoRA rank in the stored configuration other than the one the adapters were trained with."""
    model = make_model_dir(tmp_path / "model")
    _rewrite_meta(model, _set("config.model.lora.rank", 8))
    with pytest.raises(WeightsError, match="do not fit") as caught:
        load_model_artifact(model)
    assert str(model / "model.safetensors") in str(caught.value)


@pytest.mark.parametrize("case", ["not-json", "threshold-nan"])
def test_predict_refuses_it_without_traceback_or_output(case, tmp_path, capsys):
    model = make_model_dir(tmp_path / "model")
    _rewrite_meta(model, DAMAGED[case][0])
    stack = tmp_path / "stack.tiff"
    tifffile.imwrite(stack, np.zeros((2, 128, 128, 3), np.uint8), photometric="rgb")
    out = tmp_path / "p.csv"
    code = main(["predict", str(stack), "--model", str(model), "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"error: {model / 'model.safetensors'}: ")
    assert not out.exists()
