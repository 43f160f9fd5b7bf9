"""Training with every strategy on: the tiny ViT with LoRA on the synthetic multi-domain data.

Records the validation balanced accuracy reached and the wall time in
``benchmarks/results/tiny_vit_synthetic.json``. The tiny ViT has the module names of H-optimus-0
(timm ``vit_giant_patch14_reg4_dinov2``-style, 4 register tokens) at a size a CPU trains in a minute.

    python benchmarks/tiny_vit_synthetic.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, run_script, write_result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--n-per-domain", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from mitotype.data.synth import write_synthetic
    from mitotype.evaluation.splits import validation_split
    from mitotype.training.config import load_config
    from mitotype.training.inputs import load_figures
    from mitotype.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic(Path(tmp) / "data", n_per_domain=args.n_per_domain, seed=args.seed)
        overrides = ["model.backbone=tiny-vit-reg4", "model.adaptation=lora", f"optim.epochs={args.epochs}",
                     "optim.batch_size=32", "optim.lr=0.003", "optim.device=cpu", f"seed={args.seed}"]
        config = load_config(overrides=overrides)
        figures = load_figures(data, fmt="midog25", domain=["scanner"], cache_dir=Path(tmp) / "cache")
        train_idx, val_idx = validation_split(figures.records, np.arange(len(figures.records)), 0.2, args.seed)
        start = time.perf_counter()
        trainer = Trainer(config, figures.records, figures.images, train_idx, val_idx, Path(tmp) / "run",
                          log=print)
        result = trainer.fit()
        wall = time.perf_counter() - start
        strategies = {k: getattr(config.strategies, k) for k in ("mixup", "soft_labels", "supcon",
                                                                 "domain_adversarial", "sampling", "hard_mining",
                                                                 "augment")}
        figures_out = {
            "val_balanced_accuracy": result.val_metrics["balanced_accuracy"],
            "val_roc_auc": result.val_metrics.get("roc_auc"), "threshold": result.threshold,
            "best_epoch": result.best_epoch, "epochs": args.epochs, "wall_seconds": wall,
            "n_train": len(train_idx), "n_val": len(val_idx),
            "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
            "history": [{k: h[k] for k in ("epoch", "loss", "val_balanced_accuracy")} for h in result.history],
        }
        write_result("tiny_vit_synthetic", command_line(),
                     figures_out, extra={"all_strategies_on": {k: bool(getattr(v, "enabled", True))
                                                               for k, v in strategies.items()},
                                         "adaptive_focal": config.strategies.focal.adaptive})
    print(f"validation balanced accuracy {result.val_metrics['balanced_accuracy']:.3f} "
          f"(best epoch {result.best_epoch}) in {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
