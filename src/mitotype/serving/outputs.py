"""The challenge output ``multiple-mitotic-figure-classification.json``: writing it and checking it.

Contract (the challenge's reference container and its evaluator, DeepMicroscopy/MIDOG25_T2_evaluation_docker):
a JSON list with one object per stack page, in page order, ``{"class": "normal" | "atypical",
"confidence": <float>}``.

``confidence`` is p(atypical) for every figure, whatever its ``class`` (:data:`CONFIDENCE_CONTRACT`): the final
evaluator (``evaluate.py`` since its commit 2d1b108, "confidence is now only the confidence for atypical") takes
it as each figure's ROC score as it stands. ``confidence`` must be a JSON float
(the evaluator checks ``isinstance(confidence, float)``: an integer ``0``/``1`` fails the job), and a
list whose length differs from the number of pages fails the whole job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitotype.data.labels import ATYPICAL, CLASS_NAMES, NORMAL
from mitotype.errors import DataError
from mitotype.ioutils import atomic_write_text

__all__ = [
    "CLASSES",
    "CONFIDENCE_CONTRACT",
    "CONFIDENCE_READINGS",
    "OUTPUT_FILENAME",
    "OUTPUT_SLUG",
    "challenge_entries",
    "roc_score_from_entry",
    "validate_output",
    "write_challenge_output",
]

CLASSES = (CLASS_NAMES[NORMAL], CLASS_NAMES[ATYPICAL])
"""The challenge's two classes, indexed by label."""
OUTPUT_SLUG = "multiple-mitotic-figure-classification"
OUTPUT_FILENAME = f"{OUTPUT_SLUG}.json"
CONFIDENCE_CONTRACT = (
    "confidence is p(atypical) for every figure, whatever its class, because the official MIDOG 2025 "
    "Track 2 evaluator takes confidence as each figure's ROC score as it stands"
)
"""The one sentence that documents ``confidence`` everywhere (help texts, messages, README)."""

CONFIDENCE_READINGS = ("p-atypical", "predicted-class")
"""How a ``confidence`` can be read: ``p-atypical`` (the final evaluator's reading and what ``mitotype
challenge`` writes) or ``predicted-class`` (the probability of the predicted class, the reading of the
superseded draft evaluator, commit 0b35ad1, for outputs of tools that followed it)."""


def roc_score_from_entry(cls: str, confidence: float, reading: str = "p-atypical") -> float:
    """A figure's ROC score (its p(atypical)) from one output object, under ``reading``.

    ``p-atypical``: ``confidence`` as it stands, as the final evaluator takes it. ``predicted-class``: the
    superseded draft's rebuild, ``confidence if class == "atypical" else 1 - confidence``.
    """
    if reading == "p-atypical":
        return confidence
    if reading == "predicted-class":
        return confidence if cls == CLASSES[1] else 1.0 - confidence
    raise ValueError(f"unknown confidence reading {reading!r}; choose from {list(CONFIDENCE_READINGS)}")


def challenge_entries(
    p_atypical: Sequence[float] | np.ndarray, threshold: float = 0.5
) -> list[dict[str, Any]]:
    """One output object per figure: ``class`` atypical iff p >= threshold, ``confidence`` p(atypical) itself,
    whatever the class (:data:`CONFIDENCE_CONTRACT`).

    ``confidence`` is always a Python ``float`` in [0, 1] (p = 0 gives ``0.0``, p = 1 gives ``1.0``, never an
    integer). Raises ``ValueError`` for NaN/inf or values outside [0, 1].
    """
    p = np.asarray(p_atypical, dtype=np.float64).reshape(-1)
    t = float(threshold)
    if not math.isfinite(t):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    bad = ~np.isfinite(p)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"p_atypical has {int(bad.sum())} non-finite value(s) (NaN/inf), first at figure {i}"
        )
    outside = (p < 0.0) | (p > 1.0)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(f"p_atypical must lie in [0, 1]; figure {i} has {p[i]!r}")
    return [{"class": CLASSES[int(v >= t)], "confidence": float(v)} for v in p.tolist()]


def validate_output(
    entries: Any,
    n_expected: int | None,
    file: str | Path = OUTPUT_FILENAME,
    allow_extra_keys: bool = True,
) -> None:
    """Check an output as the platform's evaluator does; raise :class:`DataError` naming file and entry.

    Checks: a list; ``n_expected`` entries (skipped when ``None``); each entry an object with
    ``class`` in {normal, atypical} and ``confidence`` a JSON float (an int or bool is rejected, as
    the evaluator's ``isinstance(confidence, float)`` does). Stricter than the evaluator: NaN/inf
    and values outside [0, 1] are rejected too, since a probability cannot be either. Extra keys are
    ignored by the evaluator and allowed unless ``allow_extra_keys`` is false.
    """
    if not isinstance(entries, list):
        raise DataError(f"{file}: expected a JSON list of per-figure objects, got {type(entries).__name__}")
    if n_expected is not None and len(entries) != n_expected:
        raise DataError(
            f"{file}: has {len(entries)} entries but the stack has {n_expected} figures "
            "(the platform fails the whole job on a length mismatch)"
        )
    for i, entry in enumerate(entries):
        where = f"{file}: entry {i}"
        if not isinstance(entry, dict):
            raise DataError(
                f"{where} is a {type(entry).__name__}, expected an object with class and confidence"
            )
        missing = [k for k in ("class", "confidence") if k not in entry]
        if missing:
            raise DataError(f"{where} lacks key(s) {', '.join(repr(k) for k in missing)}")
        if not allow_extra_keys:
            extra = sorted(set(entry) - {"class", "confidence"})
            if extra:
                raise DataError(f"{where} has unexpected key(s) {extra}")
        cls = entry["class"]
        if not isinstance(cls, str) or cls not in CLASSES:
            raise DataError(f"{where} has class {cls!r}; expected 'normal' or 'atypical'")
        conf = entry["confidence"]
        if not isinstance(conf, float):
            hint = (
                f" (write {float(conf)!r}, not {conf!r})"
                if isinstance(conf, int) and not isinstance(conf, bool)
                else ""
            )
            kind = type(conf).__name__
            raise DataError(f"{where} has confidence {conf!r} of type {kind}; it must be a JSON float{hint}")
        if not math.isfinite(conf):
            raise DataError(f"{where} has non-finite confidence {conf!r}")
        if not 0.0 <= conf <= 1.0:
            raise DataError(f"{where} has confidence {conf!r} outside [0, 1]; {CONFIDENCE_CONTRACT}")


def write_challenge_output(
    path: str | Path, entries: list[dict[str, Any]], n_expected: int | None = None
) -> Path:
    """Validate ``entries`` and write them atomically as the platform expects (a JSON list)."""
    validate_output(entries, n_expected, path)
    return atomic_write_text(path, json.dumps(entries, indent=2, allow_nan=False) + "\n")
