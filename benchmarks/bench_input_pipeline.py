"""Training input pipeline: decode-once store + batched tensor augmentation vs per-sample PIL + torchvision.

One training step is forward + backward + AdamW step of ``build_classifier(ModelConfig(...))`` on a
batch of 128 px patches (the model resizes to its input size itself) with a plain BCE loss on the
logit. Three pipelines feed the same model the same batch size:

* ``model_alone``: one pre-made float batch, reused every step (pure compute, no input pipeline);
* ``ours``: random rows gathered from the :class:`PatchStore` memmap -> float tensor
  (``trainer.to_float_batch``) -> :class:`BatchAugment` (default ``AugmentSettings``) -> model, all in
  the training process, as the trainer does;
* ``naive``: ``torch.utils.data.DataLoader`` (``--workers`` processes, 2 by default) over a Dataset that
  opens each PNG with PIL and applies torchvision transforms (both flips, a random quarter turn,
  ``RandomAffine`` scale/translate, ``ColorJitter`` incl. hue, random Gaussian blur, ``ToTensor``;
  ranges taken from the default ``AugmentSettings``), default collate -> model.

Models: EfficientNet-Lite0 (``efficientnet-lite0-imagenet``, full fine-tuning) and the tiny ViT with
LoRA, each at 128 and 224 px. The tiny ViT is ``tiny-vit-reg4`` (H-optimus-0's timm class and module
names, width 32, depth 2, random weights) re-registered with 16 px patches at 128 / 224 px
(``_common.register_tiny_vit``), since the registry's one is fixed at 56 px.

Method: per model and size, the number of timed steps is fixed once (from a model-alone timing, about
``--round-seconds`` of compute); then ``--rounds`` rounds each run every pipeline once, order rotated
per round. A pipeline's round is a warm-up (at least one step and ``--warmup-seconds``, which also
starts the DataLoader workers and fills their prefetch queue to its steady level) and the timed
steps. The naive pipeline gets a fresh iterator per round (as an epoch without persistent workers)
and it is shut down at the round's end, so its workers never run during another pipeline's round.
Figures: images/s per pipeline (all timed images / all timed seconds) and ratios (median over rounds
of the ratio within a round). Also the data alone (no model): images/s of each pipeline's batches.

Run: ``python benchmarks/bench_input_pipeline.py`` (real AMi-Br data from ``MITOTYPE_SHARED_DATA``;
5.5 minutes on 2 cores shared with a training run) -> ``benchmarks/results/input_pipeline.json``.
``--quick`` runs tiny sizes in seconds (for the tests) and writes ``input_pipeline_quick.json``.
``--omp-wait-policy``: see ``_common.set_omp_wait_policy`` (passive by default here).
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    alternate,
    command_line,
    load_average,
    median_ratio,
    register_tiny_vit,
    run_script,
    set_omp_wait_policy,
    shared_data_dir,
    write_result,
)

if TYPE_CHECKING:  # torch is imported in main(), after OMP_WAIT_POLICY is set
    import torch

    Batch = tuple[torch.Tensor, torch.Tensor]
HUE = 0.04
"""``ColorJitter`` hue range of the naive pipeline (our pipeline jitters stains in HED space instead)."""
MODELS = ("efficientnet-lite0", "tiny-vit")


class RandomQuarterTurn:
    """Rotate a PIL image by a random multiple of 90 degrees (exact: PIL transpose)."""

    def __call__(self, image: Any) -> Any:
        import torch
        from PIL import Image

        k = int(torch.randint(4, ()).item())
        turns = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)
        return image if k == 0 else image.transpose(turns[k - 1])


def naive_transform() -> Callable[[Any], torch.Tensor]:
    """The usual per-sample torchvision augmentation, ranges from the default ``AugmentSettings``."""
    from torchvision import transforms as T

    from mitotype.training.batch_augment import AugmentSettings

    s = AugmentSettings()
    kernel = 2 * math.ceil(3 * s.blur_sigma[1]) + 1
    return T.Compose([
        T.RandomHorizontalFlip(),
        T.RandomVerticalFlip(),
        RandomQuarterTurn(),
        T.RandomAffine(degrees=0, translate=(s.translate, s.translate), scale=s.scale,
                       interpolation=T.InterpolationMode.BILINEAR),
        T.ColorJitter(brightness=s.brightness, contrast=s.contrast, saturation=s.saturation, hue=HUE),
        T.RandomApply([T.GaussianBlur(kernel, sigma=s.blur_sigma)], p=s.blur_prob),
        T.ToTensor(),
    ])


class PilDataset:
    """Opens one PNG per sample with PIL and applies ``transform``: the usual per-sample Dataset."""

    def __init__(self, paths: list[str], labels: np.ndarray, transform: Callable[[Any], torch.Tensor]):
        self.paths = paths
        self.labels = labels.astype(np.float32)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, float]:
        from PIL import Image

        with Image.open(self.paths[i]) as image:
            x = self.transform(image.convert("RGB"))
        return x, float(self.labels[i])


def naive_loader(dataset: PilDataset, batch: int, workers: int, seed: int) -> torch.utils.data.DataLoader:
    """A DataLoader drawing random samples (with replacement) for as many batches as asked."""
    import torch

    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=10**7,
                                             generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                                       drop_last=True)


def store_batches(images: np.ndarray, labels: np.ndarray, batch: int, seed: int) -> Iterator[Batch]:
    """Our pipeline: random rows from the memmap -> float batch -> BatchAugment, endlessly."""
    import torch

    from mitotype.models.device import to_float_batch
    from mitotype.training.batch_augment import BatchAugment

    augment = BatchAugment()
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    cpu = torch.device("cpu")
    while True:
        idx = rng.choice(len(images), size=batch, replace=False)
        x = augment(to_float_batch(images, idx, cpu), generator=gen)
        yield x, torch.from_numpy(labels[idx])


def timed_round(batches: Iterator[Batch], step: Callable[[torch.Tensor, torch.Tensor], None], steps: int,
                warmup_seconds: float, max_warmup: int) -> dict[str, float]:
    """Warm up (>= 1 step, until ``warmup_seconds`` or ``max_warmup`` steps), then time ``steps`` steps."""
    start = time.perf_counter()
    x, y = next(batches)
    first_batch = time.perf_counter() - start
    step(x, y)
    done = 1
    while done < max_warmup and time.perf_counter() - start < warmup_seconds:
        step(*next(batches))
        done += 1
    t = time.perf_counter()
    for _ in range(steps):
        step(*next(batches))
    return {"seconds": time.perf_counter() - t, "first_batch_seconds": first_batch, "warmup_steps": done}


def data_round(batches: Iterator[Batch], n_batches: int) -> dict[str, float]:
    """Time ``n_batches`` batches of a pipeline alone (after one untimed batch)."""
    next(batches)
    t = time.perf_counter()
    for _ in range(n_batches):
        next(batches)
    return {"seconds": time.perf_counter() - t}


def make_step(model: torch.nn.Module) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """forward + BCE on the logit + backward + AdamW step over the trainable parameters."""
    import torch
    import torch.nn.functional as F

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.binary_cross_entropy_with_logits(model(x).logits, y.float())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def model_config(kind: str, size: int, quick: bool) -> Any:
    from mitotype.models.classifier import ModelConfig

    if kind == "efficientnet-lite0":
        backbone = "tiny-efficientnet" if quick else "efficientnet-lite0-imagenet"
        return ModelConfig(backbone=backbone, input_size=size, adaptation="full")
    return ModelConfig(backbone=register_tiny_vit(size), weights="random", adaptation="lora")


def images_per_second(rounds: list[dict[str, float]], images_per_round: int) -> list[float]:
    return [images_per_round / r["seconds"] for r in rounds]


def bench_model(kind: str, size: int, args: argparse.Namespace, images: np.ndarray, labels: np.ndarray,
                dataset: PilDataset) -> dict[str, Any]:
    """All three pipelines, alternated, for one model at one input size."""
    import torch

    from mitotype.models.classifier import build_classifier

    torch.manual_seed(0)
    cfg = model_config(kind, size, args.quick)
    model = build_classifier(cfg)
    model.train()
    step = make_step(model)
    b = args.batch
    # contiguous N x 3 x H x W, the layout both pipelines deliver (a channels-last batch, as the permuted
    # uint8 rows give, would run EfficientNet ~25% faster on the CPU and flatter the model-alone figure)
    x0 = torch.from_numpy(np.array(images[:b])).permute(0, 3, 1, 2).float().div(255.0).contiguous()
    y0 = torch.from_numpy(labels[:b])
    step(x0, y0)  # first call: allocations, kernel selection
    t = time.perf_counter()
    step(x0, y0)
    step_s = time.perf_counter() - t
    steps = max(args.min_steps, min(args.max_steps, math.ceil(args.round_seconds / step_s)))
    round_no = itertools.count()

    def model_round() -> dict[str, float]:
        return timed_round(itertools.repeat((x0, y0)), step, steps, args.warmup_seconds, args.max_warmup)

    def ours_round() -> dict[str, float]:
        batches = store_batches(images, labels, b, seed=next(round_no))
        return timed_round(batches, step, steps, args.warmup_seconds, args.max_warmup)

    def naive_round() -> dict[str, float]:
        it = iter(naive_loader(dataset, b, args.workers, seed=next(round_no)))
        try:
            return timed_round(it, step, steps, args.warmup_seconds, args.max_warmup)
        finally:
            del it  # shuts the workers down before the next pipeline's round

    rounds = alternate({"model_alone": model_round, "ours": ours_round, "naive": naive_round}, args.rounds)
    per_round = {name: images_per_second(r, steps * b) for name, r in rounds.items()}
    totals = {name: steps * b * len(r) / sum(x["seconds"] for x in r) for name, r in rounds.items()}
    ours_vs_model = median_ratio(per_round["ours"], per_round["model_alone"])
    return {
        "backbone": cfg.backbone,
        "adaptation": cfg.adaptation,
        "input_size": model.input_size,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "batch": b,
        "timed_steps_per_round": steps,
        "rounds": args.rounds,
        "images_per_second": {k: round(v, 2) for k, v in totals.items()},
        "images_per_second_per_round": {k: [round(x, 2) for x in v] for k, v in per_round.items()},
        "ratio_ours_over_naive": median_ratio(per_round["ours"], per_round["naive"]),
        "ratio_ours_over_model_alone": ours_vs_model,
        "ratio_naive_over_model_alone": median_ratio(per_round["naive"], per_round["model_alone"]),
        "ours_within_10pct_of_model_alone": ours_vs_model is not None and ours_vs_model >= 0.9,
        "naive_first_batch_seconds_median": round(
            statistics.median(r["first_batch_seconds"] for r in rounds["naive"]), 3),
        "warmup_steps": {k: [int(x["warmup_steps"]) for x in v] for k, v in rounds.items()},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset folder (any read_dataset format; default: shared AMi-Br)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, default=None, help="input sizes (default 128 224)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 32)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the naive pipeline")
    parser.add_argument("--rounds", type=int, default=None, help="alternation rounds (default 3)")
    parser.add_argument("--round-seconds", type=float, default=None,
                        help="model-alone compute per timed round; sets the fixed step count (default 2)")
    parser.add_argument("--min-steps", type=int, default=None, help="timed steps per round, at least (2)")
    parser.add_argument("--max-steps", type=int, default=None, help="timed steps per round, at most (60)")
    parser.add_argument("--warmup-seconds", type=float, default=None, help="warm-up per round (default 1.5)")
    parser.add_argument("--max-warmup", type=int, default=8, help="warm-up steps per round, at most")
    parser.add_argument("--data-batches", type=int, default=None, help="batches per data-only round")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: seconds (tests)")
    parser.add_argument("--results-dir", type=Path, default=None, help="where the JSON goes")
    parser.add_argument("--omp-wait-policy", choices=("passive", "default"), default="passive",
                        help="passive (default here): OpenMP threads sleep instead of spinning, so other "
                             "processes on the machine slow every pipeline alike; default: as torch ships")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"sizes": [64] if quick else [128, 224], "batch": 8 if quick else 32,
                "rounds": 1 if quick else 3,
                "round_seconds": 0.0 if quick else 2.0, "min_steps": 2,
                "max_steps": 2 if quick else 60, "warmup_seconds": 0.0 if quick else 1.5,
                "data_batches": 2 if quick else 20}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if quick:
        args.max_warmup = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    omp_policy = set_omp_wait_policy(args.omp_wait_policy)
    load_before = load_average()
    import torch

    from mitotype.data.readers import read_dataset
    from mitotype.data.store import PatchStore

    data = args.data or shared_data_dir() / "amibr"
    if not data.exists():
        print(f"data not found at {data}; set MITOTYPE_SHARED_DATA or pass --data", file=sys.stderr)
        return 2
    records = read_dataset(data, check="exists").records
    labels = np.array([r.label for r in records], dtype=np.float32)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mitotype-bench-") as cache:
        store = PatchStore.open_or_build(records, cache)
        images = store.images
        dataset = PilDataset([str(r.image) for r in records], labels, naive_transform())
        b = args.batch
        data_rounds = alternate({
            "ours": lambda: data_round(store_batches(images, labels, b, seed=0), args.data_batches),
            "naive": lambda: data_round(iter(naive_loader(dataset, b, args.workers, seed=0)),
                                        args.data_batches),
        }, args.rounds)
        data_ips = {k: images_per_second(v, args.data_batches * b) for k, v in data_rounds.items()}
        results: dict[str, Any] = {}
        for kind in args.models:
            for size in args.sizes:
                key = f"{kind}@{size}"
                results[key] = bench_model(kind, size, args, images, labels, dataset)
                r = results[key]
                ips = r["images_per_second"]
                print(f"{key:24s} img/s model {ips['model_alone']:8.1f}  ours {ips['ours']:8.1f}  "
                      f"naive {ips['naive']:8.1f}  ours/naive {r['ratio_ours_over_naive']}  "
                      f"ours/model {r['ratio_ours_over_model_alone']}", flush=True)
    figures = {
        "figures_in_store": len(records),
        "store_build_seconds": round(store.seconds, 3),
        "data_only_images_per_second": {
            k: round(len(v) * args.data_batches * b / sum(x["seconds"] for x in v), 1)
            for k, v in data_rounds.items()},
        "data_only_ratio_ours_over_naive": median_ratio(data_ips["ours"], data_ips["naive"]),
        "models": results,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    extra = {
        "data": str(data.name),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": omp_policy,
        "load_average_1min_before_after": [load_before, load_average()],
        "naive_dataloader_workers": args.workers,
        "naive_transforms": "RandomHorizontalFlip, RandomVerticalFlip, random quarter turn, RandomAffine "
                            "(scale/translate), ColorJitter (brightness/contrast/saturation 0.1, hue "
                            f"{HUE}), RandomApply(GaussianBlur, p=0.1), ToTensor",
        "ours": "PatchStore memmap gather (trainer.to_float_batch) + BatchAugment(default AugmentSettings), "
                "in the training process",
        "step": "forward + BCE-with-logits on the logit + backward + AdamW (trainable parameters)",
        "tiny_vit": "tiny-vit-reg4 (vit_giant_patch14_reg4_dinov2 class, width 32, depth 2, 2 heads, 4 "
                    "registers, random weights) with img_size = input size and 16 px patches; LoRA defaults",
        "ratios": "median over rounds of the within-round ratio; images_per_second = all timed images / "
                  "all timed seconds",
        "data_only_ratio": "ours = memmap gather + BatchAugment in this process; naive = DataLoader "
                           "workers (fresh iterator per round, one untimed batch first)",
    }
    name = "input_pipeline_quick" if args.quick else "input_pipeline"
    path = write_result(name, command_line(), figures, extra=extra,
                        path=args.results_dir / f"{name}.json" if args.results_dir else None)
    print(f"data only img/s {figures['data_only_images_per_second']}  (ours/naive "
          f"{figures['data_only_ratio_ours_over_naive']})")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
