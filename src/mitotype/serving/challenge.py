"""The MIDOG 2025 Track 2 container entry point, following the contract in the challenge's reference.

Reads the one TIFF stack in ``/input/images/stacked-histopathology-roi-cropouts/`` and writes
``/output/multiple-mitotic-figure-classification.json``: one ``{"class", "confidence"}`` per page in
page order, where ``class`` follows the threshold stored with the model (its TTA threshold when TTA is on)
and ``confidence`` is p(atypical) for every figure, a float, as the final official evaluator takes it
(:data:`~mitotype.serving.outputs.CONFIDENCE_CONTRACT`). The output is validated with the evaluator's own rules
before it is written, and written atomically: a failing job leaves no JSON at all rather than a wrong one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mitotype.errors import MitotypeError

STACK_SLOT = "stacked-histopathology-roi-cropouts"
OUTPUT_NAME = "multiple-mitotic-figure-classification.json"
MODEL_DIRS = (Path("/opt/ml/model"), Path("/opt/app/model"))
MANIFEST = "mitotype-export.json"
PACKED_BASE_DIR = "base"
"""Folder of the export tarball that holds packed base weights (``mitotype export --include-base``)."""


@dataclass
class ChallengePaths:
    """Where the container reads and writes; overridable for tests and local runs."""

    input_dir: Path = Path("/input")
    """Holds ``images/stacked-histopathology-roi-cropouts/<stack>.tif(f)``."""
    output_dir: Path = Path("/output")
    """Receives ``multiple-mitotic-figure-classification.json``."""
    model_dirs: list[Path] = field(default_factory=lambda: list(MODEL_DIRS))
    """Searched in order for an exported model (the platform unpacks the model tarball there)."""

    @classmethod
    def from_env(cls) -> ChallengePaths:
        paths = cls()
        if "MITOTYPE_INPUT_DIR" in os.environ:
            paths.input_dir = Path(os.environ["MITOTYPE_INPUT_DIR"])
        if "MITOTYPE_OUTPUT_DIR" in os.environ:
            paths.output_dir = Path(os.environ["MITOTYPE_OUTPUT_DIR"])
        if "MITOTYPE_MODEL_DIR" in os.environ:
            paths.model_dirs = [model_dir_from(os.environ["MITOTYPE_MODEL_DIR"])]
        return paths


def model_dir_from(text: str) -> Path:
    """A model folder as a user names it: a path, or ``shipped`` for the model that ships with mitotype."""
    if text == "shipped":
        from mitotype.models.shipped import get_shipped_model  # start-up time: only when asked for

        return get_shipped_model().folder
    return Path(text)


def find_model_root(candidates: list[Path]) -> Path:
    """The first candidate folder holding an exported model (manifest or model.safetensors)."""
    for root in candidates:
        if (root / MANIFEST).is_file() or any(root.glob("**/model.safetensors")):
            return root
    searched = ", ".join(str(c) for c in candidates)
    raise MitotypeError(f"no exported model found (searched {searched}); pack one with `mitotype export`")


def read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not path.is_file():
        return {"members": None, "base_weights": None, "tta": True}
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MitotypeError(f"{path}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise MitotypeError(f"{path}: not UTF-8 text, so not JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("members"), list) or not manifest["members"]:
        raise MitotypeError(f"{path}: not a mitotype export manifest (needs a non-empty 'members' list)")
    members = manifest["members"]
    if not all(isinstance(m, str) and m and not Path(m).is_absolute() and ".." not in Path(m).parts
               for m in members):
        raise MitotypeError(f"{path}: 'members' must name folders inside {root}, got {members!r}")
    if not isinstance(manifest.get("tta", True), bool):  # "no" would be truthy: TTA on against the user's word
        raise MitotypeError(f"{path}: 'tta' must be true or false, got {manifest['tta']!r}")
    if not isinstance(manifest.get("base_weights"), str | None):
        raise MitotypeError(f"{path}: 'base_weights' must be a path, a Hub id or null, "
                            f"got {manifest['base_weights']!r}")
    for key in ("threshold", "threshold_tta"):
        value = manifest.get(key)
        if value is not None and not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
            raise MitotypeError(f"{path}: '{key}' must be a number in [0, 1], got {value!r}")
    for member in manifest.get("members") or []:
        if not (root / member / "model.safetensors").is_file():
            raise MitotypeError(
                f"{root}: model part '{member}/model.safetensors' named in {MANIFEST} is missing"
            )
    base = manifest.get("base_weights")
    if base and is_packed(base) and not (root / base).exists():
        raise MitotypeError(f"{root}: base weights '{base}' named in {MANIFEST} are missing")
    return manifest


@dataclass(frozen=True)
class ExportedModel:
    """An exported model as the container runs it: its member folders, base weights and manifest."""

    root: Path
    members: list[Path]
    base_weights: str | None
    """A packed file resolved inside ``root``, a reference the loader resolves, or ``None``: the members' own."""
    manifest: dict


def read_export(root: Path) -> ExportedModel:
    """The members, base weights and settings of the exported model (or plain model folder(s)) at ``root``."""
    manifest = read_manifest(root)
    members = [root / m for m in manifest["members"]] if manifest.get("members") else [root]
    base = manifest.get("base_weights")
    if base and is_packed(base):
        base = str(root / base)
    return ExportedModel(root, members, base or None, manifest)


def is_packed(base_weights: str) -> bool:
    """Whether the manifest's ``base_weights`` names a file that export packed beside the members
    (always ``base/<file>``), rather than a reference the container resolves itself (``random``, a Hub id
    with or without ``hf-hub:``, ``package:...``, an absolute path)."""
    return base_weights.startswith(PACKED_BASE_DIR + "/")


def run_challenge(
    paths: ChallengePaths, device: str = "auto", tta: bool | None = None, batch_size: int = 16,
    allow_unfinished: bool = False, runtime: str = "auto", adapt_bn: bool = False,
) -> Path:
    """Classify every page of the input stack; returns the path of the written JSON.

    An output left by an earlier run is removed first, so a failing run leaves no JSON at all.
    ``adapt_bn`` re-estimates BatchNorm statistics on the stack's own figures (AdaBN; no labels).
    """
    # start-up time: tifffile (and torch, where the model needs it) load only when a stack is classified
    from mitotype.errors import path_error
    from mitotype.ioutils import write_json_atomic
    from mitotype.models.inference import load_predictor
    from mitotype.paths import ensure_output_dir
    from mitotype.serving.outputs import challenge_entries, validate_output
    from mitotype.serving.stack import find_stack, read_stack

    out_path = ensure_output_dir(paths.output_dir) / OUTPUT_NAME
    try:
        out_path.unlink(missing_ok=True)
    except OSError as exc:
        raise path_error(exc, out_path) from None
    stack_path = find_stack(paths.input_dir / "images" / STACK_SLOT)
    images = read_stack(stack_path)
    exported = read_export(find_model_root(paths.model_dirs))
    manifest = exported.manifest
    ensemble = load_predictor(exported.members, device=device, base_weights=exported.base_weights,
                              allow_unfinished=allow_unfinished, runtime=runtime,
                              adapt_bn="domain" if adapt_bn else "off")
    use_tta = manifest.get("tta", True) if tta is None else tta
    packed = manifest.get("threshold_tta" if use_tta else "threshold")
    threshold = float(packed) if packed is not None else ensemble.threshold(use_tta)
    p = ensemble.predict(images, batch_size=batch_size * (8 if use_tta else 1), tta=use_tta,
                         adapt_bn="domain" if adapt_bn else "off")  # the stack's figures are one domain
    entries = challenge_entries(p, threshold)
    validate_output(entries, len(images), out_path)
    write_json_atomic(out_path, entries)
    return out_path
