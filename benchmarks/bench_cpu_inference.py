"""CPU inference of a trained model: eager fp32 PyTorch against bf16 autocast and ONNX Runtime.

On the AMi-Br benchmark test split (826 real figures), with and without 8-view TTA:

* speed: figures/s of each path over the same ``--images`` figures, paths alternated in rotated rounds
  (a busy machine shifts every path alike), reported with the ratio to eager fp32 in each round;
* agreement with eager fp32 over the whole test split: decisions at the model's own thresholds that
  differ, and max |p - p_eager|;
* what a user waits for, as whole commands in a fresh process (Python start and model loading included):
  ``mitotype predict`` on a 16-figure TIFF stack with TTA, and on a folder of 1,000 PNG figures without
  TTA (the folder copied from AMi-Br without its labels).

The model is the one that ships with mitotype unless ``--model`` names another; its ONNX graph is made
beside a copy of it when it has none. Writes ``benchmarks/results/cpu_inference.json``.

Run: ``python benchmarks/bench_cpu_inference.py`` (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    alternate,
    command_line,
    median_ratio,
    run_script,
    set_omp_wait_policy,
    shared_data_dir,
    write_result,
)

PATHS = ("eager_fp32", "bf16_autocast", "onnx_runtime")


def _models(model_dir: Path) -> dict[str, Any]:
    from mitotype.models.artifact import load_model_artifact
    from mitotype.models.onnx_runtime import OnnxClassifier

    eager = load_model_artifact(model_dir, device="cpu").model
    return {"eager_fp32": (eager, "fp32"), "bf16_autocast": (eager, "bf16"),
            "onnx_runtime": (OnnxClassifier(model_dir / "model.onnx"), "fp32")}


def _run(cmd: list[str], cache: Path) -> float:
    """Wall seconds of a command in a fresh process with an empty patch cache (as a new user's first run)."""
    env = {**os.environ, "MITOTYPE_CACHE": str(cache)}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="trained model folder (default: the shipped one)")
    parser.add_argument("--data", type=Path, default=None, help="AMi-Br folder (default: shared data)")
    parser.add_argument("--images", type=int, default=256, help="figures per timed pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="figures per forward (TTA: views per forward)")
    args = parser.parse_args(argv)
    set_omp_wait_policy("passive")

    from mitotype.models.onnx_runtime import current_graph, write_onnx_beside
    from mitotype.models.predict import load_ensemble, predict_proba
    from mitotype.models.shipped import get_shipped_model
    from mitotype.training.inputs import load_figures

    data = args.data or shared_data_dir() / "amibr"
    source = args.model or get_shipped_model().folder
    with tempfile.TemporaryDirectory(prefix="mitotype-cpu-inference-") as tmp:
        tmp_path = Path(tmp)
        model_dir = source
        if current_graph(source) is None:  # make the graph beside a copy, leaving the model folder as it was
            model_dir = Path(shutil.copytree(source, tmp_path / "model"))
            from mitotype.models.artifact import load_model_artifact

            write_onnx_beside(model_dir, load_model_artifact(model_dir, device="cpu").model)
        figures = load_figures(data, include={"benchmark_split": "test"}, cache_dir=tmp_path / "cache")
        ensemble, _ = load_ensemble([model_dir], device="cpu", runtime="torch")
        models = _models(model_dir)
        figures_out: dict[str, Any] = {"model": str(source), "test_figures": len(figures.records)}
        for tta in (False, True):
            key = "tta" if tta else "single_view"
            threshold = ensemble.threshold(tta)
            batch = args.batch * (8 if tta else 1)
            probs = {name: predict_proba(m, figures.images, batch, tta, "cpu", precision)
                     for name, (m, precision) in models.items()}
            ref = probs["eager_fp32"]
            agreement = {name: {"decisions_differing": int(((p >= threshold) != (ref >= threshold)).sum()),
                                "max_abs_p_difference": float(np.abs(p - ref).max())}
                         for name, p in probs.items() if name != "eager_fp32"}
            subset = figures.images[: args.images]

            def timed(name: str, subset=subset, tta=tta, batch=batch) -> float:
                model, precision = models[name]
                start = time.perf_counter()
                predict_proba(model, subset, batch, tta, "cpu", precision)
                return time.perf_counter() - start

            seconds = alternate({name: (lambda n=name: timed(n)) for name in PATHS}, args.rounds)
            figures_out[key] = {
                "threshold": threshold,
                "figures_per_second": {n: round(len(subset) * len(s) / sum(s), 1) for n, s in seconds.items()},
                "speedup_vs_eager_fp32": {n: round(median_ratio(seconds["eager_fp32"], seconds[n]), 2)
                                          for n in PATHS if n != "eager_fp32"},
                "agreement_with_eager_fp32": agreement,
            }
            print(f"{key}: {figures_out[key]['figures_per_second']} agreement {agreement}", flush=True)

        # whole commands, as a user runs them
        import tifffile

        stack = tmp_path / "stack.tiff"
        tifffile.imwrite(stack, np.asarray(figures.images[:16]), photometric="rgb")
        folder = tmp_path / "folder"
        folder.mkdir()
        for record in figures.records[:1000] if len(figures.records) >= 1000 else figures.records:
            shutil.copy(record.image, folder / Path(record.image).name)
        extra_src = load_figures(data, include={"benchmark_split": "train"}, cache_dir=tmp_path / "cache")
        for record in extra_src.records[: max(0, 1000 - len(list(folder.iterdir())))]:
            shutil.copy(record.image, folder / Path(record.image).name)
        n_folder = len(list(folder.iterdir()))
        mitotype = [sys.executable, "-m", "mitotype", "predict"]
        model_arg = ["--model", str(model_dir), "--device", "cpu"]
        commands: dict[str, Any] = {}
        for runtime in ("torch", "auto"):
            stack_s = [_run([*mitotype, str(stack), *model_arg, "--tta", "--runtime", runtime,
                             "--out", str(tmp_path / "s.csv")], tmp_path / f"cache-{runtime}-s{i}")
                       for i in range(args.rounds)]
            folder_s = _run([*mitotype, str(folder), *model_arg, "--runtime", runtime, "--out",
                             str(tmp_path / "f.csv")], tmp_path / f"cache-{runtime}-f")
            commands[runtime] = {"stack16_tta_seconds_median": round(float(np.median(stack_s)), 2),
                                 "stack16_tta_seconds": [round(s, 2) for s in stack_s],
                                 "folder_figures": n_folder, "folder_seconds": round(folder_s, 1),
                                 "folder_figures_per_second": round(n_folder / folder_s, 1)}
            print(f"predict command, runtime {runtime}: {commands[runtime]}", flush=True)
        figures_out["predict_command"] = commands
    path = write_result("cpu_inference", command_line(), figures_out)
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
