"""p(atypical) for uint8 patches: batched dihedral TTA and fold ensembles.

TTA runs one forward over all 8 dihedral views of a batch (8B images) rather than 8 forwards,
and the ensemble averages probabilities (not logits) across fold models, so every member's
calibration counts equally. The ensemble's threshold is the mean of its members' validation
thresholds: each was chosen on that member's own validation slides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mitotype.errors import MitotypeError
from mitotype.training.checkpoint import LoadedModel, load_model_artifact
from mitotype.training.trainer import autocast_dtype, resolve_device


@torch.no_grad()
def predict_proba(
    model: torch.nn.Module,
    images: np.ndarray,
    batch_size: int = 64,
    tta: bool = False,
    device: torch.device | str = "cpu",
    precision: str = "auto",
) -> np.ndarray:
    """p(atypical) for N x H x W x 3 uint8 images; ``tta`` averages the 8 dihedral views in one pass."""
    from mitotype.training.augment import dihedral_mean, dihedral_views

    device = torch.device(device)
    amp = autocast_dtype(precision, device)
    model.eval()
    out = []
    step = max(1, batch_size // 8) if tta else batch_size
    for start in range(0, len(images), step):
        x = torch.from_numpy(np.array(images[start : start + step])).to(device)  # a writable copy of the rows
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        if tta:
            x = dihedral_views(x)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(x).logits.float()
        p = torch.sigmoid(logits)
        if tta:
            p = dihedral_mean(p, n_views=8)
        out.append(p.cpu().numpy())
    probs = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
    if not np.all(np.isfinite(probs)):
        raise MitotypeError("the model produced NaN or infinite scores; refusing to classify")
    return probs.astype(np.float64)


@dataclass
class Ensemble:
    """One or more trained models whose probabilities are averaged."""

    members: list[LoadedModel]

    @property
    def threshold(self) -> float:
        return float(np.mean([m.threshold for m in self.members]))

    def predict(
        self,
        images: np.ndarray,
        batch_size: int = 64,
        tta: bool = False,
        device: torch.device | str = "cpu",
        precision: str = "auto",
    ) -> np.ndarray:
        probs = [predict_proba(m.model, images, batch_size, tta, device, precision) for m in self.members]
        return np.mean(probs, axis=0)


def find_model_dirs(path: str | Path) -> list[Path]:
    """A model folder, or a folder of them (e.g. a cross-validation run's ``folds/*/model``)."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return [path]
    found = sorted(p.parent for p in path.glob("**/model.safetensors"))
    if not found:
        raise MitotypeError(f"{path}: no trained model found (expected model.safetensors here or below)")
    return found


def load_ensemble(
    paths: Sequence[str | Path], device: str = "auto", base_weights: str | None = None
) -> tuple[Ensemble, torch.device]:
    dev = resolve_device(device)
    dirs = [d for p in paths for d in find_model_dirs(p)]
    members = [load_model_artifact(d, base_weights=base_weights, device=dev) for d in dirs]
    sizes = {tuple(m.meta["preprocessing"].get("input_size", ())) for m in members}
    if len(sizes) > 1:
        raise MitotypeError(f"ensemble members disagree on input size: {sorted(sizes)}")
    return Ensemble(members), dev
