"""The speed benchmarks run end to end in their tiny modes, so they cannot rot unnoticed.

Each script runs as its own process (as a user runs it) on the small synthetic dataset, writing its
JSON into a temporary folder; the figures are not checked, only that every measurement is there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO_ROOT / "benchmarks"


def run_script(script: str, *args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    pythonpath = os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": pythonpath}
    env.pop("OUT", None)
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def read_result(path: Path) -> dict[str, Any]:
    result = json.loads(path.read_text())
    for key in ("benchmark", "commit", "machine", "command", "figures"):
        assert key in result, key
    return result


@pytest.mark.slow
def test_input_pipeline_quick(synth_dir: Path, tmp_path: Path) -> None:
    run_script("bench_input_pipeline.py", "--quick", "--data", synth_dir, "--results-dir", tmp_path)
    figures = read_result(tmp_path / "input_pipeline_quick.json")["figures"]
    assert set(figures["models"]) == {"efficientnet-lite0@64", "tiny-vit@64"}
    for entry in figures["models"].values():
        assert set(entry["images_per_second"]) == {"model_alone", "ours", "naive"}
        assert all(v > 0 for v in entry["images_per_second"].values())
        assert entry["ratio_ours_over_naive"] > 0 and entry["ratio_ours_over_model_alone"] > 0
    assert set(figures["data_only_images_per_second"]) == {"ours", "naive"}


@pytest.mark.slow
def test_inference_quick(synth_dir: Path, tmp_path: Path) -> None:
    run_script("bench_inference.py", "--quick", "--data", synth_dir, "--results-dir", tmp_path)
    figures = read_result(tmp_path / "inference_quick.json")["figures"]
    assert set(figures["models"]) == {"efficientnet-lite0@128", "tiny-vit-reg4"}
    for entry in figures["models"].values():
        assert set(entry["images_per_second"]) == {"no_tta", "tta_batched", "tta_batched_fwd_B", "tta_looped",
                                                   "per_image"}
        # batched TTA, looped TTA and per-image inference compute the same probabilities
        assert entry["max_abs_diff_tta_batched_vs_looped"] < 1e-4
        assert entry["max_abs_diff_tta_batched_vs_batched_fwd_B"] < 1e-4
        assert entry["max_abs_diff_no_tta_vs_per_image"] < 1e-4


@pytest.mark.slow
def test_gpu_hoptimus_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    run_script("gpu_hoptimus.py", "--dry-run", "--out", out)
    figures = read_result(out)["figures"]
    for phase in ("matmul_bf16", "model", "flops", "inference_eager", "stack16_latency", "train_lora_eager",
                  "train_lora_eager_checkpointing", "inference_compiled", "train_lora_compiled",
                  "train_lora_compiled_checkpointing"):
        assert "error" not in figures[phase] and "skipped" not in figures[phase], (phase, figures[phase])
    # the batch search met the simulated out-of-memory above 4 and backed off
    assert figures["inference_eager"]["search"]["first_oom_batch"] == 8
    assert figures["train_lora_eager"]["batch"] == 4
    assert figures["inference_eager"]["images_per_second"] > 0
    assert figures["train_lora_compiled_checkpointing"]["images_per_second"] > 0
    stack = figures["stack16_latency"]
    assert stack["seconds_median_tta"] > 0 and stack["seconds_median_tta_looped"] > 0
    # one forward over the 8 views gives what 8 forwards over host-flipped copies give
    assert stack["max_abs_diff_tta_batched_vs_looped"] < 1e-5


def test_gpu_hoptimus_without_cuda_measures_nothing(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = run_script("gpu_hoptimus.py", "--out", tmp_path / "gpu.json", timeout=60)
    assert "no CUDA device; nothing measured" in proc.stdout
    assert not (tmp_path / "gpu.json").exists()


@pytest.mark.slow
def test_gpu_trainer_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "trainer.json"
    run_script("gpu_trainer.py", "--dry-run", "--out", out)
    figures = read_result(out)["figures"]
    assert set(figures) == {"tiny-vit-reg4", "tiny-efficientnet"}
    for entry in figures.values():
        assert "error" not in entry, entry.get("traceback")
        assert entry["model_alone"]["images_per_second"] > 0
        assert entry["trainer"]["epochs"] == 2 and entry["trainer"]["last_epoch_images_per_second"] > 0
        assert entry["trainer_over_model_alone"] > 0
        assert entry["predict"]["tta_images_per_second_second_call"] > 0
        assert entry["challenge"]["entries"] == 16 and entry["challenge"]["seconds_total"] > 0
