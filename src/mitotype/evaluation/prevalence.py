"""The prevalence-shift yardstick: a held-out domain scored as it is and resampled to fewer atypical figures.

Every AMi-Br domain has 21-25 % atypical figures; the labs our users come from have 5-17 %. A score that does not
depend on the other figures (one view or TTA, source BatchNorm statistics, a stored threshold) keeps its
sensitivity and specificity under such a shift, so its balanced accuracy moves only by sampling noise. What does
move: scores that adapt to the input (AdaBN re-estimates BatchNorm statistics on it, and atypical figures weigh
on those statistics), label-free thresholds that read the input's score distribution, and calibration (a
probability fitted at one prevalence overstates p(atypical) at a lower one). Resampling a held-out domain to a
set prevalence, several times, shows each of these with its spread.

A draw keeps every figure of the class that is scarce at the target prevalence and samples the other class
without replacement, so each draw is a real subset of real figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mitotype.evaluation.metrics import binary_metrics

YARDSTICK_METRICS = ("balanced_accuracy", "sensitivity", "specificity", "roc_auc", "ece")
"""The figures reported for every draw (ECE on the scores as given: calibrated or not)."""


def prevalence_draw(labels: Any, prevalence: float | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted row indices of one subset of ``labels`` (0/1) whose share of atypical figures is ``prevalence``.

    ``None`` keeps every figure (the domain as it is). Above the natural prevalence the atypical figures are
    kept and normal ones sampled; below it, the reverse. At least one figure of each class is kept.
    """
    y = np.asarray(labels).astype(int)
    if prevalence is None:
        return np.arange(len(y))
    if not 0.0 < prevalence < 1.0:
        raise ValueError(f"prevalence must lie strictly between 0 and 1, got {prevalence}")
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("a prevalence draw needs figures of both classes")
    if len(pos) / len(y) > prevalence:  # too many atypical figures: keep the normal ones, sample atypical
        k = max(1, round(prevalence * len(neg) / (1.0 - prevalence)))
        pos = rng.choice(pos, size=min(k, len(pos)), replace=False)
    else:
        k = max(1, round(len(pos) * (1.0 - prevalence) / prevalence))
        neg = rng.choice(neg, size=min(k, len(neg)), replace=False)
    return np.sort(np.concatenate([pos, neg]))


def prevalence_draws(labels: Any, prevalence: float | None, n_draws: int, seed: int = 0) -> list[np.ndarray]:
    """``n_draws`` independent draws (one for the domain as it is, which has no randomness)."""
    if n_draws < 1:
        raise ValueError(f"n_draws must be at least 1, got {n_draws}")
    if prevalence is None:
        return [prevalence_draw(labels, None, np.random.default_rng(seed))]
    rng = np.random.default_rng([seed, round(prevalence * 1e6)])
    return [prevalence_draw(labels, prevalence, rng) for _ in range(n_draws)]


def draw_metrics(y: Any, p: Any, threshold: float) -> dict[str, float | None]:
    """The yardstick's figures of one draw: balanced accuracy, sensitivity, specificity, ROC AUC, ECE."""
    m = binary_metrics(y, p, threshold)
    return {k: (None if m.get(k) is None else float(m[k])) for k in YARDSTICK_METRICS}


def summarise_draws(rows: Sequence[dict[str, float | None]]) -> dict[str, Any]:
    """Mean and sample sd over draws of every figure (sd ``None`` for a single draw)."""
    out: dict[str, Any] = {"draws": len(rows)}
    for key in YARDSTICK_METRICS:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
        out[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return out


def yardstick(
    labels: Any,
    prevalences: Sequence[float | None],
    n_draws: int,
    score: Callable[[np.ndarray], tuple[np.ndarray, float]],
    seed: int = 0,
) -> dict[str, Any]:
    """Score one held-out domain at each prevalence: ``score(rows)`` returns the p(atypical) of those rows
    and the threshold to apply (both may depend on the rows, as AdaBN and label-free rules do).

    Returns ``{"natural" | "<prevalence>": summary}`` with :func:`summarise_draws`'s figures and the realised
    prevalence, and every draw's figures under ``"per_draw"``.
    """
    y = np.asarray(labels).astype(int)
    out: dict[str, Any] = {}
    for prevalence in prevalences:
        rows_out = []
        for rows in prevalence_draws(y, prevalence, n_draws, seed):
            p, threshold = score(rows)
            rows_out.append(draw_metrics(y[rows], p, threshold) | {"prevalence": float(y[rows].mean()),
                                                                    "threshold": float(threshold)})
        key = "natural" if prevalence is None else f"{prevalence:g}"
        out[key] = summarise_draws(rows_out) | {"prevalence": float(np.mean([r["prevalence"] for r in rows_out])),
                                                "per_draw": rows_out}
    return out


__all__ = ["YARDSTICK_METRICS", "draw_metrics", "prevalence_draw", "prevalence_draws", "summarise_draws",
           "yardstick"]
