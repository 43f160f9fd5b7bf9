"""Trained classifiers that ship inside the package, so that ``mitotype predict INPUT`` works out of the box.

A shipped model is an ordinary trained-model folder (``model.safetensors`` with its metadata, and
``model.json``) under ``mitotype/models/shipped/<name>/``, plus ``MODEL_CARD.md``: what it was trained on
and under which terms, the recipe, the input contract, its thresholds and its measured figures with the
command that produced them. Its tensors are stored in fp16 (half the size; they are cast back to fp32
when loaded) and it holds the whole fine-tuned backbone, so it needs no pretrained base weights: its
configuration says ``weights: random`` and every tensor is overwritten on loading.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from mitotype.errors import MitotypeError
from mitotype.ioutils import atomic_save_safetensors, atomic_write_text, write_json_atomic
from mitotype.models.metadata import META_FILE, META_KEY, MODEL_FILE

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
DEFAULT_SHIPPED_MODEL = "amibr-effnet-lite0-224"
"""The model ``predict`` uses when no ``--model`` is given."""
CARD_FILE = "MODEL_CARD.md"

__all__ = ["DEFAULT_SHIPPED_MODEL", "SHIPPED_DIR", "RechosenThresholds", "ShippedModel", "get_shipped_model",
           "list_shipped_models", "pack_shipped_model"]


@dataclass(frozen=True)
class ShippedModel:
    """One shipped model folder and what its card's first lines say about it."""

    name: str
    folder: Path
    summary: str
    """The card's first paragraph after its title."""

    @property
    def size_bytes(self) -> int:
        return (self.folder / MODEL_FILE).stat().st_size


def _summary(card: Path) -> str:
    lines = [line.strip() for line in card.read_text(encoding="utf-8").splitlines()]
    body = [line for line in lines if line and not line.startswith("#")]
    return body[0] if body else ""


def list_shipped_models(root: Path | None = None) -> list[ShippedModel]:
    """Every complete shipped model under ``root`` (default: the package's; a folder with the model file
    and its card)."""
    root = SHIPPED_DIR if root is None else root
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if (folder / MODEL_FILE).is_file() and (folder / CARD_FILE).is_file():
            found.append(ShippedModel(folder.name, folder, _summary(folder / CARD_FILE)))
    return found


def get_shipped_model(name: str | None = None, root: Path | None = None) -> ShippedModel:
    """The shipped model called ``name`` (default :data:`DEFAULT_SHIPPED_MODEL`)."""
    wanted = name or DEFAULT_SHIPPED_MODEL
    models = {m.name: m for m in list_shipped_models(root)}
    if wanted not in models:
        have = ", ".join(models) or "none in this installation"
        raise MitotypeError(f"no shipped model named {wanted!r} (shipped: {have}); pass --model with a trained "
                            "model folder")
    return models[wanted]


@dataclass(frozen=True)
class RechosenThresholds:
    """Decision thresholds chosen again for a run's very weights, on its own validation split, by another rule
    than the one it trained with (what ``threshold: <rule>`` would have stored)."""

    rule: str
    """The ``threshold`` rule that chose them (e.g. ``val-platt``)."""
    threshold: float
    """Single-view threshold on p(atypical)."""
    threshold_tta: float
    """8-view TTA threshold on p(atypical)."""
    source: str
    """Where they were computed (a benchmark result), recorded in the model's metadata."""


def pack_shipped_model(run_dir: Path, dest: Path, card_text: str,
                       thresholds: RechosenThresholds | None = None) -> Path:
    """Copy a fully fine-tuned trained model from ``run_dir`` into ``dest`` as a shipped model (fp16), with
    ``thresholds`` in place of the run's own when given.

    Refuses a model that needs base weights (LoRA, frozen backbone): it would not work without them.
    """
    # the training extra: packing reads tensors and writes YAML (finding a shipped model needs neither)
    import yaml
    from safetensors.torch import load_file

    from mitotype.models.artifact import read_artifact_meta

    src = Path(run_dir) / MODEL_FILE
    meta = read_artifact_meta(Path(run_dir))
    if meta["config"]["model"]["adaptation"] != "full" and not meta.get("merged"):
        raise MitotypeError(f"{src}: only fully fine-tuned models can ship without their base weights")
    meta["config"]["model"]["weights"] = "random"  # every backbone tensor is in the file
    meta["shipped_from"] = str(run_dir)
    if thresholds is not None:
        meta["thresholds_rechosen"] = {"from_rule": meta["config"].get("threshold"), "from": [
            meta["threshold"], meta.get("threshold_tta")], "source": thresholds.source}
        meta["config"]["threshold"] = thresholds.rule
        meta["threshold"], meta["threshold_tta"] = float(thresholds.threshold), float(thresholds.threshold_tta)
    state = load_file(str(src))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(half, dest / MODEL_FILE, {META_KEY: json.dumps(meta)})
    write_json_atomic(dest / META_FILE, meta)
    (dest / CARD_FILE).write_text(card_text, encoding="utf-8")
    if thresholds is not None:  # the configuration as the metadata now holds it
        atomic_write_text(dest / "config.yaml", yaml.safe_dump(meta["config"], sort_keys=False))
    elif (Path(run_dir) / "config.yaml").is_file():
        shutil.copy(Path(run_dir) / "config.yaml", dest / "config.yaml")
    return dest


def fp16_max_error(run_dir: Path, dest: Path) -> float:
    """Largest absolute difference between a run's tensors and their shipped fp16 copies (a packing check)."""
    from safetensors.torch import load_file

    a, b = load_file(str(Path(run_dir) / MODEL_FILE)), load_file(str(Path(dest) / MODEL_FILE))
    return max(float((a[k].float() - b[k].float()).abs().max()) if a[k].numel() else 0.0 for k in a)
