"""Frozen-backbone leave-one-domain-out with and without the embedding cache: wall time and predictions.

A linear probe (``model.adaptation=frozen``; augmentation and MixUp off, as a probe is run) on a ViT with
random weights (``--backbone``, default ``dinov2-small`` at 224 px: speed does not depend on the weights)
over a synthetic 4-domain dataset, 4 folds x ``--epochs`` epochs, through ``mitotype.experiments.cv``:
first without the cache, then with a cold cache, then once more with the cache warm (a second head on the
same backbone reuses every embedding). Reports each wall time, the speed-ups, and how far the out-of-fold
predictions of the cached runs are from the uncached run's. Writes ``benchmarks/results/embedding_cache.json``.

Run: ``python benchmarks/bench_embedding_cache.py`` (about 15 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, run_script, set_omp_wait_policy, write_result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="dinov2-small")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--per-domain", type=int, default=100, help="synthetic figures per domain")
    args = parser.parse_args(argv)
    set_omp_wait_policy("passive")

    from mitotype.data.synth import write_synthetic
    from mitotype.experiments.cv import run_cv
    from mitotype.training.config import load_config
    from mitotype.training.inputs import load_figures

    with tempfile.TemporaryDirectory(prefix="mitotype-embcache-") as tmp:
        root = Path(tmp)
        data = write_synthetic(root / "data", n_per_domain=args.per_domain, seed=0)
        figures = load_figures(data, fmt="midog25", domain=["scanner"], cache_dir=root / "patches")
        base = [f"model.backbone={args.backbone}", "model.weights=random", "model.adaptation=frozen",
                f"optim.epochs={args.epochs}", "optim.device=cpu", "optim.batch_size=32", "optim.warmup_epochs=0",
                "strategies.augment.enabled=false", "strategies.mixup.enabled=false", "data.val_fraction=0.2",
                f"data.cache_dir={root / 'cache'}"]
        runs: dict[str, Any] = {}
        for name, extra in (("uncached", ["optim.embedding_cache=false"]), ("cache_cold", []),
                            ("cache_warm_second_head", ["model.head_hidden=64"])):
            config = load_config(overrides=[*base, *extra])
            start = time.perf_counter()
            results = run_cv(config, figures, root / name, scheme="lodo", n_bootstrap=100)
            seconds = time.perf_counter() - start
            with (root / name / "predictions.csv").open(newline="") as fh:
                rows = list(csv.DictReader(fh))
            runs[name] = {"seconds": round(seconds, 1), "p": {r["uid"]: float(r["p_atypical"]) for r in rows},
                          "decision": {r["uid"]: r["decision"] for r in rows},
                          "pooled_balanced_accuracy": results["summary"]["pooled"]["balanced_accuracy"]}
            print(f"{name}: {seconds:.0f} s, pooled balanced accuracy "
                  f"{runs[name]['pooled_balanced_accuracy']:.4f}", flush=True)
        ref = runs["uncached"]["p"]
        diff = max(abs(runs["cache_cold"]["p"][u] - ref[u]) for u in ref)
    figures_out = {
        "backbone": args.backbone, "epochs": args.epochs, "folds": 4, "figures": len(figures.records),
        "seconds": {n: r["seconds"] for n, r in runs.items()},
        "speedup_cold_cache": round(runs["uncached"]["seconds"] / runs["cache_cold"]["seconds"], 2),
        "speedup_warm_cache": round(runs["uncached"]["seconds"] / runs["cache_warm_second_head"]["seconds"], 2),
        "max_abs_p_difference_cached_vs_uncached": diff,
        "pooled_balanced_accuracy": {n: r["pooled_balanced_accuracy"] for n, r in runs.items()},
        "decisions_differing": sum(runs["cache_cold"]["decision"][u] != runs["uncached"]["decision"][u] for u in ref),
    }
    print(json.dumps(figures_out, indent=1))
    print(f"-> {write_result('embedding_cache', command_line(), figures_out)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
