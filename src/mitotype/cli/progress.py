"""What the CLI hands the library so that a person sees a run move: tqdm bars and log lines.

The library never prints; it calls these callbacks when the CLI supplies them.
"""

from __future__ import annotations

from typing import Any


def progress_bars(enabled: bool) -> Any:
    """A ``factory(total, description)`` of per-epoch tqdm bars, or ``None`` for no bars (also where tqdm, of
    the training extra, is not installed: a command of the base install runs without its bar)."""
    from mitotype.extras import importable

    if not enabled or not importable("tqdm"):
        return None

    def factory(total: int, description: str) -> Any:
        # start-up time: tqdm is imported only when a bar is shown
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=description, leave=False, disable=None)  # None: no bar off a terminal

    return factory


def log(message: str) -> None:
    """One line of a run's progress for the person at the terminal."""
    print(message, flush=True)
