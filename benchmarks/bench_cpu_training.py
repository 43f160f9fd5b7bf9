"""CPU training speed of the real ``Trainer``: the allocator, channels-last, bf16 autocast and torch.compile.

Each path trains the ``full-cpu`` preset (EfficientNet-Lite0, every strategy) at ``--size`` px for one
short epoch on the same real AMi-Br figures (``--figures`` drawn from the benchmark train split, a
slide-grouped validation part of them), paths alternated in rotated rounds so that a busy machine slows
every path alike. Every epoch runs in its own process, so that process-wide settings (the C allocator,
``MITOTYPE_RETAIN_MEMORY``) differ between paths and no path inherits another's heap or compiled graphs.
``system_allocator`` is fp32 eager with glibc's own allocator (the default before the retained heap,
``mitotype.models.allocator``); every other path keeps the retained heap. Figures/s is the trainer's own
``train_images_per_second`` (training only, validation and set-up excluded). A compiled path compiles
again in every epoch here, which its figure includes; it is not run by default (measured at 0.63-1.02x of
eager with its compilation excluded, docs/results.md). Writes ``benchmarks/results/cpu_training.json``.

Run: ``python benchmarks/bench_cpu_training.py`` (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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

BASELINE = "system_allocator"
PATHS: dict[str, tuple[list[str], dict[str, str]]] = {
    BASELINE: ([], {"MITOTYPE_RETAIN_MEMORY": "0"}),
    "eager_fp32": ([], {}),
    "channels_last": (["optim.channels_last=true"], {}),
    "bf16_autocast": (["optim.precision=bf16"], {}),
    "compiled_channels_last": (["optim.compile=true", "optim.channels_last=true"], {}),
}
"""path -> (config overrides, environment) on top of ``full-cpu`` fp32 eager."""
DEFAULT_PATHS = [BASELINE, "eager_fp32", "channels_last", "bf16_autocast"]


def child_epoch(args: argparse.Namespace) -> int:
    """One epoch of one path in this (fresh) process; prints its figures as one JSON line."""
    import hashlib
    import resource

    import numpy as np
    from safetensors.torch import load_file

    from mitotype.evaluation.splits import validation_split
    from mitotype.models.allocator import retain_freed_memory
    from mitotype.training.config import load_config
    from mitotype.training.inputs import load_figures
    from mitotype.training.trainer import Trainer

    figures = load_figures(args.data, include={"benchmark_split": "train"}, cache_dir=args.cache)
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(len(figures.records), size=min(args.figures * 5 // 4, len(figures.records)),
                                replace=False))
    train_idx, val_idx = validation_split(figures.records, chosen, fraction=0.2, seed=0)
    config = load_config(preset="full-cpu", overrides=[
        f"model.input_size={args.size}", "optim.epochs=1", "optim.device=cpu", *PATHS[args.child][0]])
    with tempfile.TemporaryDirectory(prefix="mitotype-cpu-training-") as out:
        start = time.perf_counter()
        Trainer(config, figures.records, figures.images, train_idx, val_idx, Path(out)).fit()
        wall = time.perf_counter() - start
        row = json.loads((Path(out) / "metrics.jsonl").read_text().splitlines()[-1])
        weights = load_file(Path(out) / "model.safetensors")
        digest = hashlib.sha256(b"".join(weights[k].contiguous().numpy().tobytes() for k in sorted(weights)))
    print(json.dumps({"figures_per_second": float(row["train_images_per_second"]), "wall_seconds": wall,
                      "weights_sha256": digest.hexdigest()[:16],
                      "train_figures": len(train_idx), "retained_heap": retain_freed_memory(),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="model input size (px)")
    parser.add_argument("--figures", type=int, default=320, help="training figures per epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=DEFAULT_PATHS)
    parser.add_argument("--data", type=Path, default=None, help="AMi-Br folder (default: shared data)")
    parser.add_argument("--name", default="cpu_training", help="results name")
    parser.add_argument("--child", choices=list(PATHS), help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    policy = set_omp_wait_policy("passive")
    args.data = args.data or shared_data_dir() / "amibr"
    if args.child:
        return child_epoch(args)

    import numpy as np

    from mitotype.training.inputs import load_figures

    with tempfile.TemporaryDirectory(prefix="mitotype-cpu-training-") as tmp:
        load_figures(args.data, include={"benchmark_split": "train"}, cache_dir=Path(tmp))  # decode once

        def one_epoch(name: str) -> dict[str, Any]:
            command = [sys.executable, __file__, "--child", name, "--cache", tmp, "--data", str(args.data),
                       "--size", str(args.size), "--figures", str(args.figures)]
            env = {**os.environ, **PATHS[name][1]}  # the child sets its own OpenMP wait policy
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{name}: the epoch failed:\n{done.stderr[-2000:]}")
            return json.loads(done.stdout.strip().splitlines()[-1])

        runs = alternate({name: (lambda n=name: one_epoch(n)) for name in args.paths}, args.rounds)
    speeds = {n: [r["figures_per_second"] for r in v] for n, v in runs.items()}
    base = speeds.get(BASELINE)
    figures_out: dict[str, Any] = {
        "input_size": args.size, "train_figures": runs[args.paths[0]][0]["train_figures"],
        "omp_wait_policy": policy, "rounds": args.rounds,
        "figures_per_second": {n: [round(s, 2) for s in v] for n, v in speeds.items()},
        "figures_per_second_median": {n: round(float(np.median(v)), 2) for n, v in speeds.items()},
        # per round: (1 / baseline speed) / (1 / path speed), the two measured side by side in that round
        f"speedup_vs_{BASELINE}": ({n: median_ratio([1 / s for s in base], [1 / s for s in v])
                                    for n, v in speeds.items() if n != BASELINE} if base else None),
        "epoch_wall_seconds_median": {n: round(float(np.median([r["wall_seconds"] for r in v])), 1)
                                      for n, v in runs.items()},
        "peak_rss_mb_median": {n: round(float(np.median([r["peak_rss_mb"] for r in v])))
                               for n, v in runs.items()},
        "retained_heap": {n: v[0]["retained_heap"] for n, v in runs.items()},
        # the same seed and data: paths that change no arithmetic must end with bit-identical weights
        "weights_sha256": {n: sorted({r["weights_sha256"] for r in v}) for n, v in runs.items()},
    }
    print(json.dumps(figures_out, indent=1))
    print(f"-> {write_result(args.name, command_line(), figures_out)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
