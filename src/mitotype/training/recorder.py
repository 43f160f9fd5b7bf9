"""Where each epoch's figures go: ``metrics.jsonl`` (one JSON row per epoch), TensorBoard when it is installed,
and one line for the user. One recorder per run; only the main process records."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


class Recorder:
    """Appends the epochs of one run to its folder; silent (and writing nothing) when not ``enabled``."""

    def __init__(self, out_dir: str | Path, epochs: int, log: Callable[[str], None] | None = None,
                 enabled: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.epochs = epochs
        self.log = log or (lambda _msg: None)
        self.enabled = enabled
        self.writer: Any = None

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / METRICS_FILE

    def open(self, resume: bool) -> None:
        """Start recording: a TensorBoard writer when tensorboard is installed; a run that does not resume
        starts ``metrics.jsonl`` afresh (a resumed one appends to the epochs it has)."""
        if not self.enabled:
            return
        self.writer = _tensorboard(self.out_dir)
        if not resume and self.metrics_path.exists():
            self.metrics_path.unlink()

    def record(self, row: dict[str, Any], val: dict[str, Any]) -> None:
        """Append the epoch's ``row`` (its ``epoch`` is 1-based) and log one line from its validation ``val``."""
        if not self.enabled:
            return
        with self.metrics_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for k, v in row.items():
                if isinstance(v, int | float) and k != "epoch":
                    self.writer.add_scalar(k, v, row["epoch"])
        self.log(f"epoch {row['epoch']}/{self.epochs} loss {row['loss']:.4f} "
                 f"val bal.acc {val['balanced_accuracy']:.4f} (thr {val['threshold']:.3f}) "
                 f"auc {val.get('roc_auc') or float('nan'):.4f}")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _tensorboard(out_dir: Path) -> Any:
    """A TensorBoard writer when tensorboard is installed, else ``None``."""
    try:  # optional dependency: tensorboard (the `tensorboard` extra)
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: JSON lines only
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


__all__ = ["METRICS_FILE", "Recorder"]
