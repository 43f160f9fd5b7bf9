"""Ablation verdicts, the project's science: is a variant better or worse than its baseline, beyond the noise?

Two sources of noise, one module:

- **which figures were tested**: :func:`paired_bootstrap_delta` resamples the test slides of two prediction tables
  of the same figures (the variant's and the baseline's), so a change in balanced accuracy comes with a 95 %
  interval (cross-validation's ablation, the hold-out experiment's per-seed ablation);
- **which seed trained**: a change paired by seed (each variant run minus the baseline run of its seed) is set
  against the baseline's spread over seeds, for a balanced accuracy at least its mean per-domain sd over seeds
  (:func:`noise_floor`); :class:`Verdict` says whether it exceeds that floor (the hold-out experiment's ablation
  over seeds, ``benchmarks/lodo_levers.py``'s lever table via :func:`seed_paired_table`).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from mitotype.errors import MitotypeError
from mitotype.evaluation.predictions import PredictionTable


class ComparisonError(MitotypeError):
    """Runs that cannot be compared (no baseline of that seed, other held-out domains, a seed twice)."""


# ---------------------------------------------------------------------------- resampling the test slides


@dataclass(frozen=True)
class BootstrapDelta:
    """A change in pooled balanced accuracy (other - base) with its 95 % slide-bootstrap interval."""

    delta: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict[str, float]:
        return {"delta": self.delta, "ci_low": self.ci_low, "ci_high": self.ci_high}


def paired_bootstrap_delta(base: PredictionTable, other: PredictionTable, n: int = 1000,
                           seed: int = 0) -> BootstrapDelta:
    """Change in pooled balanced accuracy of the decisions, ``other`` - ``base``, over the figures both tables
    hold, with a 95 % interval from ``n`` resamplings of whole slides (the unit that is not independent)."""
    by_key = {p.key: p for p in other}
    pairs = [(a, by_key[a.key]) for a in base if a.key in by_key]
    y = np.array([a.label for a, _ in pairs])
    da = np.array([a.decision for a, _ in pairs])
    db = np.array([b.decision for _, b in pairs])
    groups = np.array([a.slide for a, _ in pairs])
    uniq, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    point = balanced_accuracy_score(y, db) - balanced_accuracy_score(y, da)
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(n):
        pick = np.concatenate([members[g] for g in rng.integers(0, len(uniq), len(uniq))])
        if len(np.unique(y[pick])) < 2:
            continue
        deltas.append(balanced_accuracy_score(y[pick], db[pick]) - balanced_accuracy_score(y[pick], da[pick]))
    lo, hi = np.percentile(deltas, [2.5, 97.5]) if deltas else (float("nan"), float("nan"))
    return BootstrapDelta(float(point), float(lo), float(hi))


# ---------------------------------------------------------------------------- the spread over seeds


def mean_sd(values: Sequence[float]) -> dict[str, float | None]:
    """Mean and sample sd (``None`` for one value) of a metric over seeds."""
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None}


def domain_seed_sd(per_domain: Sequence[Mapping[str, float]]) -> float | None:
    """The mean over held-out domains of each domain's sd over seeds (``per_domain``: one mapping domain -> value
    per seed); ``None`` with fewer than two seeds."""
    if len(per_domain) < 2:
        return None
    return statistics.fmean(statistics.stdev(run[d] for run in per_domain) for d in per_domain[0])


def noise_floor(sd: float | None, domain_sd: float | None = None) -> float | None:
    """The spread a change must exceed: the metric's sd over seeds, and for a balanced accuracy at least the
    per-domain seed sd (two seeds can agree on the pooled figure by chance while every domain moves)."""
    values = [v for v in (sd, domain_sd) if v is not None]
    return max(values) if values else None


@dataclass(frozen=True)
class Verdict:
    """A change paired by seed, set against the baseline's noise floor."""

    per_seed: tuple[float, ...]
    """Each seed's change (variant minus the baseline run of the same seed)."""
    floor: float | None
    """The baseline's spread over seeds (:func:`noise_floor`); ``None`` when unknown (one seed)."""

    @property
    def change(self) -> float:
        """The mean change over seeds."""
        return statistics.fmean(self.per_seed)

    @property
    def beats_spread(self) -> bool | None:
        """Whether the mean change exceeds the floor (``None`` when there is no floor)."""
        return None if self.floor is None else abs(self.change) > self.floor


def seed_paired_table(baseline: Sequence[Mapping[str, Any]], variants: Mapping[str, Sequence[Mapping[str, Any]]],
                      metrics: Sequence[str], balanced_accuracies: Sequence[str] = (),
                      label: str = "result") -> dict[str, Any]:
    """Baseline mean and spread per metric; per variant its mean and its change paired by seed, against the floor.

    Each run is a mapping with its ``seed``, every metric of ``metrics``, ``per_domain_ba`` (held-out domain ->
    balanced accuracy) and ``label`` naming it in messages. The metrics in ``balanced_accuracies`` take the
    per-domain seed sd as their floor too. Every run must hold out the baseline's domains, and a variant run
    needs a baseline run of its seed (:class:`ComparisonError` otherwise).
    """
    by_seed = {run["seed"]: run for run in baseline}
    if len(by_seed) != len(baseline):
        raise ComparisonError(f"baseline runs must have distinct seeds: {[(r[label], r['seed']) for r in baseline]}")
    base: dict[str, Any] = {"runs": list(baseline), **{m: mean_sd([r[m] for r in baseline]) for m in metrics}}
    domain_sd = domain_seed_sd([r["per_domain_ba"] for r in baseline])
    base["domain_seed_sd"] = domain_sd
    floors = {m: noise_floor(base[m]["sd"], domain_sd if m in balanced_accuracies else None) for m in metrics}
    base["noise"] = floors
    table: dict[str, Any] = {"baseline": base}
    held_out = sorted(baseline[0]["per_domain_ba"])
    for run in [*baseline, *(run for runs in variants.values() for run in runs)]:
        if sorted(run["per_domain_ba"]) != held_out:
            raise ComparisonError(f"{run[label]}: held-out domains {', '.join(sorted(run['per_domain_ba']))}, the "
                                  f"baseline's {', '.join(held_out)} (compare on the shared ones with --domains)")
    for name, runs in variants.items():
        paired = [run for run in runs if run["seed"] in by_seed]
        if not paired:
            raise ComparisonError(f"lever {name}: no baseline run with the seed of {[r[label] for r in runs]}")
        row: dict[str, Any] = {"runs": list(runs), "seeds": [r["seed"] for r in paired]}
        for m in metrics:
            verdict = Verdict(tuple(r[m] - by_seed[r["seed"]][m] for r in paired), floors[m])
            row[m] = {"mean": statistics.fmean(r[m] for r in paired), "change": verdict.change,
                      "change_per_seed": list(verdict.per_seed), "beats_spread": verdict.beats_spread}
        table[name] = row
    return table


__all__ = ["BootstrapDelta", "ComparisonError", "Verdict", "domain_seed_sd", "mean_sd", "noise_floor",
           "paired_bootstrap_delta", "seed_paired_table"]
