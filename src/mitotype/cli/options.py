"""What several commands share: argparse value types, the model-loading flags (``--runtime``,
``--allow-unfinished``) and the notes the latter prints, and the votes column of a gallery."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def parsed(text: str, cast: Callable[[str], T], expected: str) -> T:
    """``cast(text)``, or argparse's one-line refusal naming what was ``expected``."""
    try:
        return cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def open_share(text: str) -> float:
    """A share strictly between 0 and 1 (a prevalence), for argparse."""
    value = parsed(text, float, "a number between 0 and 1")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a share strictly between 0 and 1, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = parsed(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def probability(text: str) -> float:
    """argparse type: a finite number in [0, 1] (a decision threshold on p(atypical))."""
    value = parsed(text, float, "a number")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value


def unfinished_notes(dirs: list[Path], allow_unfinished: bool) -> None:
    """Say which unfinished runs ``--allow-unfinished`` let through."""
    from mitotype.runs import require_finished

    if allow_unfinished:
        for note in require_finished(dirs, allow_unfinished=True):
            print(f"note: {note}")


def add_runtime(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", choices=("auto", "torch", "onnx"), default="auto",
                        help="auto (default): ONNX Runtime on the CPU where a model folder holds a current "
                        "model.onnx (`mitotype models onnx`), else PyTorch; torch; onnx (an error without one)")


def add_allow_unfinished(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-unfinished", action="store_true",
                        help="accept a model folder whose training did not finish (its best epoch so far)")


def votes_text(record) -> str | None:  # FigureRecord -> "2/3", or None when no vote is known
    return f"{record.atypical_votes}/{record.votes_cast}" if record.votes_cast else None
