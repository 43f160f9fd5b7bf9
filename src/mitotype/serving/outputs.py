"""The challenge output ``multiple-mitotic-figure-classification.json``: writing it and checking it.

Contract (``shared/README.md``): a JSON list with one object per stack page, in page order,
``{"class": "normal" | "atypical", "confidence": <float>}``, where ``confidence`` is p(atypical)
(not the probability of the predicted class) and must be a JSON float: the platform rejects an
integer ``0``/``1``, a wrong length fails the whole job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitotype.errors import DataError
from mitotype.ioutils import atomic_write_text

__all__ = [
    "CLASSES",
    "OUTPUT_FILENAME",
    "OUTPUT_SLUG",
    "challenge_entries",
    "validate_output",
    "write_challenge_output",
]

CLASSES = ("normal", "atypical")
OUTPUT_SLUG = "multiple-mitotic-figure-classification"
OUTPUT_FILENAME = f"{OUTPUT_SLUG}.json"


def challenge_entries(
    p_atypical: Sequence[float] | np.ndarray, threshold: float = 0.5
) -> list[dict[str, Any]]:
    """One output object per figure: ``class`` atypical iff p >= threshold, ``confidence`` = p.

    ``confidence`` is always a Python ``float`` (numpy scalars and ints are converted, so 0 becomes
    0.0 and serialises as ``0.0``). Raises ``ValueError`` for NaN/inf or values outside [0, 1].
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
    return [{"class": CLASSES[1] if v >= t else CLASSES[0], "confidence": float(v)} for v in p.tolist()]


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
            raise DataError(f"{where} has confidence {conf!r} outside [0, 1]; it must be p(atypical)")


def write_challenge_output(
    path: str | Path, entries: list[dict[str, Any]], n_expected: int | None = None
) -> Path:
    """Validate ``entries`` and write them atomically as the platform expects (a JSON list)."""
    validate_output(entries, n_expected, path)
    return atomic_write_text(path, json.dumps(entries, indent=2, allow_nan=False) + "\n")
