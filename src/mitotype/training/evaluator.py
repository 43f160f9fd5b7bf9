"""The model under training as a scorer: p(atypical) of any figures, the validation metrics of an epoch at the
threshold the run's rule picks, and for the kept model its 8-view TTA threshold and calibration maps.

One job: turning the current weights into scores and scores into the figures that select and publish a model.
It holds no training state; the trainer hands it the model (and the embedding cache when the backbone is frozen).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mitotype.errors import MitotypeError
from mitotype.evaluation.calibration import fit_calibration
from mitotype.evaluation.metrics import best_threshold, binary_metrics
from mitotype.evaluation.thresholds import platt_threshold
from mitotype.models.artifact import CALIBRATED_VIEWS
from mitotype.models.calibration import Calibration
from mitotype.models.embedding_cache import EmbeddingTable
from mitotype.models.predict import predict_proba, raw_probabilities
from mitotype.models.views import dihedral_mean


def choose_threshold(rule: str, y: np.ndarray, p: np.ndarray, fixed: float = 0.5) -> float:
    """The decision threshold the ``threshold`` rule asks for, from validation labels and scores (both classes)."""
    if rule == "fixed":
        return fixed
    if rule == "val-platt":
        return platt_threshold(y, p)
    return best_threshold(y, p)


class Evaluator:
    """Scores the trainer's model on record indices into ``images``; ``labels`` are every record's 0/1 labels."""

    def __init__(self, model: Any, images: np.ndarray, labels: np.ndarray, val_idx: np.ndarray, *,
                 device: torch.device, batch_size: int = 128, precision: str = "auto",
                 amp_dtype: torch.dtype | None = None, rule: str = "val-balanced-accuracy",
                 fixed_threshold: float = 0.5, embeddings: EmbeddingTable | None = None) -> None:
        self.model = model
        self.images = images
        self.labels = labels
        self.val_idx = np.asarray(val_idx)
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        self.amp_dtype = amp_dtype
        self.rule = rule
        self.fixed_threshold = fixed_threshold
        self.embeddings = embeddings
        """Cached embeddings of every figure (frozen backbone): the heads run on them instead of the images."""

    def predict(self, idx: np.ndarray, tta: bool = False) -> np.ndarray:
        """p(atypical) for the given record indices, in that order (no augmentation; ``tta``: the mean over
        the 8 dihedral views). Non-finite scores mean training diverged, and say so."""
        if self.embeddings is not None:
            probs = self._cached_probabilities(np.asarray(idx), tta)
        elif tta:
            probs = predict_proba(self.model, self.images[idx], batch_size=self.batch_size, tta=True,
                                  device=self.device, precision=self.precision)
        else:
            probs = raw_probabilities(self.model, self.images, idx=idx, batch_size=self.batch_size,
                                      device=self.device, precision=self.precision)
        if not np.all(np.isfinite(probs)):
            raise MitotypeError("training diverged: the model produces NaN or infinite scores "
                                "(lower optim.lr or enable optim.grad_clip)")
        return probs

    @torch.no_grad()
    def _cached_probabilities(self, idx: np.ndarray, tta: bool) -> np.ndarray:
        """The heads on cached embeddings: per view, then averaged over the views (as batched TTA does)."""
        assert self.embeddings is not None
        self.model.eval()
        views = range(8) if tta else range(1)
        out = []
        for start in range(0, len(idx), self.batch_size):
            emb = torch.from_numpy(self.embeddings.get(idx[start : start + self.batch_size], views)).to(self.device)
            flat = emb.transpose(0, 1).reshape(-1, emb.shape[-1])  # view-major, as dihedral_views lays out
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                p = torch.sigmoid(self.model.heads(flat).logits.float())
            out.append(dihedral_mean(p, n_views=len(views)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def choose_threshold(self, y: np.ndarray, p: np.ndarray) -> float:
        """The decision threshold this run's rule picks from labels ``y`` and scores ``p``."""
        return choose_threshold(self.rule, y, p, self.fixed_threshold)

    def validate(self) -> dict[str, Any]:
        """Validation metrics of the current model at the threshold chosen on these very scores."""
        p = self.predict(self.val_idx)
        y = self.labels[self.val_idx]
        thr = self.choose_threshold(y, p)
        metrics = binary_metrics(y, p, thr)
        metrics["threshold"] = float(thr)
        metrics["balanced_accuracy_at_0.5"] = binary_metrics(y, p, 0.5)["balanced_accuracy"]
        return metrics

    def tta_threshold_and_calibration(self) -> tuple[float, dict[str, Calibration]]:
        """For the current (kept) weights: the 8-view TTA threshold (averaging views pulls probabilities inward,
        so the single-view threshold would misplace TTA decisions) and the calibration map of each way of
        scoring, all fitted on the validation figures' scores."""
        y = self.labels[self.val_idx]
        p = {view: self.predict(self.val_idx, tta=view == "tta") for view in CALIBRATED_VIEWS}
        calibration = {view: cal for view in CALIBRATED_VIEWS if (cal := fit_calibration(y, p[view])) is not None}
        return self.choose_threshold(y, p["tta"]), calibration


__all__ = ["Evaluator", "choose_threshold"]
