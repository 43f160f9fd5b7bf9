"""CPU training speed of the real ``Trainer``: fp32 eager against channels-last, bf16 autocast and torch.compile.

Each path trains the ``full-cpu`` preset (EfficientNet-Lite0, every strategy) at ``--size`` px for one
short epoch on the same real AMi-Br figures (``--figures`` drawn from the benchmark train split, a
slide-grouped validation part of them), paths alternated in rotated rounds so that a busy machine slows
every path alike. Figures/s is the trainer's own ``train_images_per_second`` (training only, validation
and set-up excluded); the first round of a compiled path pays its compilation and is reported apart.
Writes ``benchmarks/results/cpu_training.json``.

Run: ``python benchmarks/bench_cpu_training.py`` (about 15 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, command_line, median_ratio, set_omp_wait_policy, shared_data_dir, write_result

PATHS = {
    "eager_fp32": [],
    "channels_last": ["optim.channels_last=true"],
    "bf16_autocast": ["optim.precision=bf16"],
    "compiled": ["optim.compile=true"],
    "compiled_channels_last": ["optim.compile=true", "optim.channels_last=true"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="model input size (px)")
    parser.add_argument("--figures", type=int, default=480, help="training figures per epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS))
    parser.add_argument("--data", type=Path, default=None, help="AMi-Br folder (default: shared data)")
    args = parser.parse_args(argv)
    policy = set_omp_wait_policy("passive")

    import numpy as np
    import torch

    from mitotype.evaluation.splits import validation_split
    from mitotype.training.config import load_config
    from mitotype.training.inputs import load_figures
    from mitotype.training.trainer import Trainer

    data = args.data or shared_data_dir() / "amibr"
    with tempfile.TemporaryDirectory(prefix="mitotype-cpu-training-") as tmp:
        figures = load_figures(data, include={"benchmark_split": "train"}, cache_dir=Path(tmp) / "cache")
        rng = np.random.default_rng(0)
        chosen = np.sort(rng.choice(len(figures.records), size=min(args.figures * 5 // 4, len(figures.records)),
                                    replace=False))
        train_idx, val_idx = validation_split(figures.records, chosen, fraction=0.2, seed=0)
        runs = {name: 0 for name in args.paths}
        first: dict[str, float] = {}

        def one_epoch(name: str) -> float:
            config = load_config(preset="full-cpu", overrides=[
                f"model.input_size={args.size}", "optim.epochs=1", "optim.device=cpu", *PATHS[name]])
            out = Path(tmp) / f"{name}-{runs[name]}"
            runs[name] += 1
            start = time.perf_counter()
            Trainer(config, figures.records, figures.images, train_idx, val_idx, out).fit()
            wall = time.perf_counter() - start
            row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
            first.setdefault(name, wall)
            return float(row["train_images_per_second"])

        speeds = alternate({name: (lambda n=name: one_epoch(n)) for name in args.paths}, args.rounds)
    skip = {n: 1 if len(v) > 1 and "compiled" in n else 0 for n, v in speeds.items()}  # round 0 compiles
    steady = {n: v[skip[n]:] for n, v in speeds.items()}
    figures_out: dict[str, Any] = {
        "input_size": args.size, "train_figures": len(train_idx), "omp_wait_policy": policy,
        "torch_threads": torch.get_num_threads(),
        "figures_per_second": {n: [round(s, 2) for s in v] for n, v in speeds.items()},
        "figures_per_second_median": {n: round(float(np.median(v)), 2) for n, v in steady.items()},
        # per round: (1 / eager speed) / (1 / path speed), the eager rounds paired with the path's rounds
        "speedup_vs_eager_fp32": {n: median_ratio([1 / s for s in speeds["eager_fp32"][skip[n]:]],
                                                  [1 / s for s in steady[n]])
                                  for n in steady if n != "eager_fp32"},
        "first_epoch_wall_seconds": {n: round(s, 1) for n, s in first.items()},
    }
    print(json.dumps(figures_out, indent=1))
    print(f"-> {write_result('cpu_training', command_line(), figures_out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
