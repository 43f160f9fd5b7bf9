"""The real training loop on one CUDA GPU: ``Trainer`` img/s against the model alone, then predict and
the challenge entry point, on synthetic figures (random base weights: speed does not depend on them).

Where ``gpu_hoptimus.py`` measures the bare step, this runs what a user runs: ``Trainer.fit`` with a
preset (every strategy on: batched augmentation on the device, MixUp, SupCon, the domain head, hard
mining, validation each epoch), ``predict_proba`` with batched TTA, ``export_model`` and
``run_challenge`` on a 16-page TIFF stack. Per backbone:

* ``model_alone``: forward + backward + AdamW on one pre-made device batch (the same backbone,
  adaptation and class head; no domain head; BCE on the logit, bf16 autocast), the ceiling for the
  loop at that batch size;
* ``trainer``: ``train_images_per_second`` of the last epoch (the first one warms up kernels) from
  ``metrics.jsonl``, with the epoch's mining and validation seconds beside it;
* ``trainer_over_model_alone``: what the whole loop (input pipeline, strategies, logging) keeps;
* ``predict``: img/s of ``predict_proba`` without and with batched 8-view TTA on the validation figures,
  the first call (which meets new batch shapes) and a second identical one;
* ``challenge``: seconds for ``run_challenge`` on one 16-page stack (reads the stack, loads the exported
  model, writes the JSON), and whether the output has 16 valid entries.

Backbones: ``h-optimus-0`` with preset ``full`` (LoRA, batch 64) and ``efficientnet-lite0-imagenet`` with
preset ``full-cpu`` (full fine-tuning at 128 px, batch 32). ``--dry-run`` uses tiny stand-ins on the CPU
in seconds (the tests run it). Output: ``$OUT/gpu_trainer.json`` when ``OUT`` is set, else
``benchmarks/results/gpu_trainer.json``.

    python benchmarks/gpu_trainer.py            # about 2 minutes on an H100
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, RESULTS_DIR, command_line, run_script, set_omp_wait_policy, write_result

NAME = "gpu_trainer"
RUNS = {  # backbone -> (preset, extra overrides)
    "h-optimus-0": ("full", []),
    "efficientnet-lite0-imagenet": ("full-cpu", []),
}
DRY_RUNS = {
    "tiny-vit-reg4": ("full", ["optim.eval_batch_size=32"]),
    "tiny-efficientnet": ("full-cpu", ["model.input_size=64"]),
}


def log(message: str) -> None:
    print(message, flush=True)


def model_alone(config: Any, device: Any, seconds: float) -> dict[str, Any]:
    """img/s of the bare training step at the preset's batch size (same backbone and head, AdamW, autocast)."""
    import torch
    import torch.nn.functional as F

    from mitotype.models.classifier import build_classifier
    from mitotype.models.device import autocast_dtype

    torch.manual_seed(0)
    with torch.device(device):
        model = build_classifier(config.model)
    model.to(device).train()
    amp = autocast_dtype(config.optim.precision, device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    b = config.optim.batch_size
    x = torch.rand(b, 3, 128, 128, device=device)  # 128 px patches: the model resizes as in training
    y = torch.randint(0, 2, (b,), device=device).float()

    def step() -> None:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(x).logits
        F.binary_cross_entropy_with_logits(logits.float(), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        step()
    sync()
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        step()
        n += 1
        sync()
    elapsed = time.perf_counter() - start
    return {"batch": b, "steps": n, "seconds": round(elapsed, 3), "images_per_second": round(b * n / elapsed, 2)}


def bench_backbone(backbone: str, preset: str, extra: list[str], data: Path, work: Path, args: argparse.Namespace,
                   device: Any) -> dict[str, Any]:
    import tifffile
    import torch

    from mitotype.evaluation.splits import validation_split
    from mitotype.models.artifact import load_model_artifact
    from mitotype.models.predict import predict_proba
    from mitotype.serving.challenge import STACK_SLOT, ChallengePaths, run_challenge
    from mitotype.serving.export import export_model
    from mitotype.serving.outputs import validate_output
    from mitotype.training.config import load_config
    from mitotype.training.inputs import load_figures
    from mitotype.training.trainer import Trainer

    overrides = [f"model.backbone={backbone}", "model.weights=random", f"optim.epochs={args.epochs}",
                 "optim.patience=0", f"optim.device={device}", f"data.path={data}", *extra]
    config = load_config(preset=preset, overrides=overrides)
    out: dict[str, Any] = {"preset": preset, "overrides": overrides}
    out["model_alone"] = model_alone(config, device, args.measure_seconds)
    gc.collect()  # the bare model and its optimiser state go before the trainer builds its own
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    log(f"  {backbone}: model alone {out['model_alone']['images_per_second']} img/s")

    figures = load_figures(data, cache_dir=work / "cache")
    train_idx, val_idx = validation_split(figures.records, np.arange(len(figures.records)), 0.2, seed=0)
    run_dir = work / f"run-{backbone}"
    start = time.perf_counter()
    result = Trainer(config, figures.records, figures.images, train_idx, val_idx, run_dir,
                     log=lambda m: log(f"  [{backbone}] {m}")).fit()
    last = result.history[-1]
    out["trainer"] = {
        "epochs": len(result.history), "train_figures": len(train_idx), "val_figures": len(val_idx),
        "fit_seconds": round(time.perf_counter() - start, 2),
        "last_epoch_images_per_second": round(last["train_images_per_second"], 2),
        "last_epoch_seconds": {k: round(last[k], 3) for k in ("seconds_mining", "seconds_train",
                                                                "seconds_validation")},
        "per_epoch_images_per_second": [round(h["train_images_per_second"], 2) for h in result.history],
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
    }
    out["trainer_over_model_alone"] = round(
        out["trainer"]["last_epoch_images_per_second"] / out["model_alone"]["images_per_second"], 3)
    log(f"  {backbone}: trainer {out['trainer']['last_epoch_images_per_second']} img/s "
        f"({out['trainer_over_model_alone']} of the model alone)")

    loaded = load_model_artifact(run_dir, device=device)
    images = figures.images[val_idx]
    predict: dict[str, Any] = {"images": len(images)}
    for tta in (False, True):
        bs = config.optim.eval_batch_size * (8 if tta else 1)
        key = "tta_images_per_second" if tta else "images_per_second"
        for call in ("first_call", "second_call"):  # the first pays for batch shapes not seen before
            t = time.perf_counter()
            predict_proba(loaded.model, images, batch_size=bs, tta=tta, device=device)
            predict[f"{key}_{call}"] = round(len(images) / (time.perf_counter() - t), 2)
    out["predict"] = predict
    del loaded

    tarball = work / f"{backbone}.tar.gz"
    export_model([run_dir], tarball, tta=True)
    model_root = work / f"opt-ml-model-{backbone}"
    with tarfile.open(tarball) as tar:
        tar.extractall(model_root, filter="data")
    stack_dir = work / "input" / "images" / STACK_SLOT
    if not stack_dir.is_dir():
        stack_dir.mkdir(parents=True)
        tifffile.imwrite(stack_dir / "stack.tiff", np.asarray(figures.images[:16]), photometric="rgb")
    paths = ChallengePaths(input_dir=work / "input", output_dir=work / f"output-{backbone}",
                           model_dirs=[model_root])
    t = time.perf_counter()
    written = run_challenge(paths, device=str(device))
    seconds = time.perf_counter() - t
    entries = json.loads(written.read_text())
    validate_output(entries, 16)
    out["challenge"] = {"seconds_total": round(seconds, 3), "entries": len(entries),
                        "includes": "read stack, load exported model (random base), 8-view TTA, write JSON"}
    log(f"  {backbone}: challenge entry point {seconds:.2f} s for 16 patches, output valid")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny stand-ins on the CPU, seconds")
    parser.add_argument("--backbones", nargs="+", default=None, help="default: both (dry run: tiny ones)")
    parser.add_argument("--figures-per-domain", type=int, default=None, help="synthetic figures per domain (256)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (3; the last is reported)")
    parser.add_argument("--measure-seconds", type=float, default=None, help="model-alone timing (8 s)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    dry = args.dry_run
    runs = DRY_RUNS if dry else RUNS
    args.backbones = args.backbones or list(runs)
    args.figures_per_domain = args.figures_per_domain or (12 if dry else 256)
    args.epochs = args.epochs or (2 if dry else 3)
    args.measure_seconds = args.measure_seconds or (0.2 if dry else 8.0)
    if args.out is None:
        name = f"{NAME}_dry_run.json" if dry else f"{NAME}.json"
        args.out = Path(os.environ["OUT"]) / name if os.environ.get("OUT") else RESULTS_DIR / name
    if dry:
        set_omp_wait_policy("passive")
    import torch

    try:
        import mitotype  # noqa: F401
    except ImportError:  # a bare checkout on the GPU machine
        sys.path.insert(0, str(REPO_ROOT / "src"))
    if not dry and not torch.cuda.is_available():
        print("no CUDA device; nothing measured (use --dry-run to exercise the code on the CPU)")
        return 0
    from mitotype.data.synth import write_synthetic

    device = torch.device("cpu" if dry else "cuda")
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
           "dry_run": dry}
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mitotype-gpu-trainer-") as tmp:
        work = Path(tmp)
        data = write_synthetic(work / "data", n_per_domain=args.figures_per_domain, seed=0)
        for backbone in args.backbones:
            preset, extra = runs[backbone]
            log(f"{backbone} ({preset}) on {env['device']}")
            try:
                figures[backbone] = bench_backbone(backbone, preset, extra, data, work, args, device)
            except Exception as exc:  # record and go on to the next backbone: device time is scarce
                figures[backbone] = {"error": f"{type(exc).__name__}: {exc}",
                                     "traceback": traceback.format_exc(limit=8)}
                log(f"  {backbone}: {figures[backbone]['error']}")
            write_result(NAME, command_line(), figures, extra={"environment": env}, path=args.out)
    log(f"wrote {args.out}")
    return 1 if any("error" in v for v in figures.values()) else 0


if __name__ == "__main__":
    sys.exit(run_script(main))
