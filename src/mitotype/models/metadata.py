"""What a trained model folder says about itself, read without PyTorch: its metadata and its thresholds.

A model folder's ``model.safetensors`` carries the configuration, thresholds and preprocessing in its header
(see :mod:`mitotype.models.artifact`). Everything that only needs those (which thresholds an ensemble
applies, whether the folders agree on the input size, which folders a path names) lives here, so that the
ONNX Runtime path classifies without importing torch: the header is read with safetensors' numpy API, which
never touches a tensor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitotype.errors import MitotypeError
from mitotype.models.calibration import Calibration
from mitotype.runs import require_finished

ARTIFACT_FORMAT = 1
MODEL_FILE = "model.safetensors"
META_FILE = "model.json"
META_KEY = "mitotype"
"""The safetensors metadata key that holds the artifact's metadata."""
CALIBRATED_VIEWS = ("single", "tta")
"""The ways of scoring a calibration map is fitted for: one view, 8-view TTA (its scores are pulled inward)."""

__all__ = [
    "ARTIFACT_FORMAT",
    "CALIBRATED_VIEWS",
    "META_FILE",
    "META_KEY",
    "MODEL_FILE",
    "calibrated_prevalence",
    "check_meta_fields",
    "ensemble_mean",
    "ensemble_threshold",
    "find_model_dirs",
    "member_calibrations",
    "read_members",
    "read_meta_fields",
    "refuse_repeated_members",
    "stored_calibration",
    "threshold_of",
    "write_calibration",
]


def read_raw_meta(model_dir: Path) -> tuple[str, Path]:
    """The metadata JSON text stored in a model folder's ``model.safetensors`` and the file's path."""
    from safetensors import SafetensorError, safe_open

    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise MitotypeError(f"{model_dir}: no {MODEL_FILE} (not a trained mitotype model folder)")
    try:
        with safe_open(str(path), framework="numpy") as fh:  # "pt" would import torch for nothing
            raw = (fh.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError) as exc:
        raise MitotypeError(f"{path}: unreadable model file ({exc})") from None
    if not raw:
        raise MitotypeError(f"{path}: carries no mitotype metadata (not written by mitotype)")
    return raw, path


def check_meta_fields(raw: str, path: Path) -> dict[str, Any]:
    """The parsed metadata with every field inference indexes into checked (not the model configuration,
    which only a PyTorch build needs: :func:`mitotype.models.artifact.read_artifact_meta` checks it too).
    A damaged or hand-edited header must be one line naming the file, not a traceback or a NaN threshold."""
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise MitotypeError(f"{path}: its mitotype metadata is not valid JSON (a damaged model file)") from None
    if not isinstance(meta, dict):
        raise MitotypeError(f"{path}: its mitotype metadata is a {type(meta).__name__}, not an object")
    if meta.get("format") != ARTIFACT_FORMAT:
        raise MitotypeError(f"{path}: model format {meta.get('format')} is not supported")
    for key in ("config", "preprocessing"):
        if not isinstance(meta.get(key), dict):
            raise MitotypeError(f"{path}: metadata '{key}' is missing or not an object (a damaged model file)")
    for key in ("threshold", "threshold_tta"):
        value = meta.get(key)
        if value is None and key == "threshold_tta":
            continue  # written by versions before TTA thresholds
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise MitotypeError(f"{path}: metadata '{key}' must be a number in [0, 1], got {value!r}")
    for key, value in (("num_domains", meta.get("num_domains", 0)), ("config.seed", meta["config"].get("seed", 0))):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise MitotypeError(f"{path}: metadata '{key}' must be a whole number >= 0, got {value!r}")
    calibration = meta.get("calibration", {})  # absent in models written before calibration
    if not isinstance(calibration, dict) or not set(calibration) <= set(CALIBRATED_VIEWS):
        raise MitotypeError(f"{path}: metadata 'calibration' must map {list(CALIBRATED_VIEWS)} to fitted maps, "
                            f"got {calibration!r}")
    for view, entry in calibration.items():
        Calibration.from_dict(entry, where=f"{path}: metadata 'calibration.{view}'")
    return meta


def stored_calibration(meta: dict[str, Any], tta: bool) -> Calibration | None:
    """The calibration map a model stores for one way of scoring (``None``: written before calibration)."""
    entry = meta.get("calibration", {}).get("tta" if tta else "single")
    return None if entry is None else Calibration.from_dict(entry)


def read_meta_fields(model_dir: Path) -> dict[str, Any]:
    """A model folder's metadata, its inference fields checked (:func:`check_meta_fields`), without torch."""
    raw, path = read_raw_meta(model_dir)
    return check_meta_fields(raw, path)


def threshold_of(meta: dict, tta: bool) -> float:
    """The member's threshold for the way it is applied: TTA shifts probabilities, so a model stores
    one threshold chosen on single-view validation scores and one on 8-view TTA scores."""
    if tta and meta.get("threshold_tta") is not None:
        return float(meta["threshold_tta"])
    return float(meta["threshold"])


def member_calibrations(metas: Sequence[dict], tta: bool) -> list[Calibration] | None:
    """Every member's calibration map for the way it is applied, or ``None`` unless every member has one (a mix
    of calibrated and raw scores would mean nothing, so such an ensemble reports raw scores throughout)."""
    maps = [stored_calibration(m, tta) for m in metas]
    return maps if maps and all(c is not None for c in maps) else None


def ensemble_threshold(metas: Sequence[dict], tta: bool = False, calibrated: bool = True) -> float:
    """An ensemble's threshold: the mean of its members' validation thresholds for the way it is applied, each
    on the scale of the p(atypical) the ensemble reports (:func:`ensemble_mean`): calibrated where every member
    is, raw otherwise or when ``calibrated`` is false."""
    maps = member_calibrations(metas, tta) if calibrated else None
    if maps is None:
        return float(np.mean([threshold_of(m, tta) for m in metas]))
    return float(np.mean([c.threshold(threshold_of(m, tta)) for c, m in zip(maps, metas)]))


def ensemble_mean(metas: Sequence[dict], member_p: Sequence[np.ndarray], tta: bool = False,
                  calibrated: bool = True) -> np.ndarray:
    """The ensemble's p(atypical): the mean of its members' calibrated probabilities (raw scores where a member
    has no calibration, or when ``calibrated`` is false). A single calibrated member keeps every decision: its
    map is increasing and :func:`ensemble_threshold` maps the threshold through it too."""
    maps = member_calibrations(metas, tta) if calibrated else None
    if maps is None:
        return np.mean(member_p, axis=0)
    return np.mean([c.apply(p) for c, p in zip(maps, member_p)], axis=0)


def calibrated_prevalence(metas: Sequence[dict], tta: bool = False) -> float | None:
    """The share of atypical figures at which the ensemble's calibrated p(atypical) holds (the members'
    validation prevalences, averaged), or ``None`` when it reports raw scores."""
    maps = member_calibrations(metas, tta)
    return None if maps is None else float(np.mean([c.prevalence for c in maps]))


def find_model_dirs(path: str | Path) -> list[Path]:
    """A model folder, or a folder of them (e.g. a cross-validation run's ``folds/*/model``)."""
    path = Path(path)
    if (path / MODEL_FILE).is_file():
        return [path]
    found = sorted(p.parent for p in path.glob(f"**/{MODEL_FILE}"))
    if not found:
        raise MitotypeError(f"{path}: no trained model found (expected {MODEL_FILE} here or below)")
    return found


def refuse_repeated_members(dirs: list[Path]) -> None:
    """An ensemble member given twice (the same folder, or a copy with the same weights) doubles the
    work and silently weights that model twice; almost always a slip on the command line (``--model M M``).

    Copies are told by their bytes, hashed only for files of the same size and the same stored metadata (two
    trainings differ in their metrics), so fold models of one architecture are not read twice."""
    from mitotype.models.onnx_graph import sha256_of
    seen: dict[Path, Path] = {}
    for d in dirs:
        key = d.resolve()
        if key in seen:
            raise MitotypeError(f"{d}: the same model is given twice; give each ensemble member once")
        seen[key] = d
    by_size: dict[tuple[int, str], list[Path]] = {}
    for d in dirs:
        file = d / MODEL_FILE
        if file.is_file():
            try:
                meta = json.dumps(read_meta_fields(d), sort_keys=True, default=str)
            except MitotypeError:  # unreadable: the loader that follows names the problem
                continue
            by_size.setdefault((file.stat().st_size, meta), []).append(d)
    for same_size in (group for group in by_size.values() if len(group) > 1):
        digests: dict[str, Path] = {}
        for d in same_size:
            digest = sha256_of(d / MODEL_FILE)
            if digest in digests:
                raise MitotypeError(f"{d}: the same weights as {digests[digest]} (a copy of one model); "
                                    "give each ensemble member once")
            digests[digest] = d


def read_members(paths: Sequence[str | Path], allow_unfinished: bool = False,
                 read_meta: Any = read_meta_fields) -> tuple[list[Path], list[dict[str, Any]]]:
    """The model folders under ``paths`` and their metadata, as an ensemble takes them: a run whose training
    did not finish is refused unless ``allow_unfinished``, and the members must agree on the input size.
    ``read_meta`` reads one folder's metadata (the PyTorch path also checks the model configuration)."""
    dirs = [d for p in paths for d in find_model_dirs(p)]
    refuse_repeated_members(dirs)
    require_finished(dirs, allow_unfinished)  # a run stopped half-way is not a model
    metas = [read_meta(d) for d in dirs]
    sizes = {tuple(m["preprocessing"].get("input_size", ())) for m in metas}
    if len(sizes) > 1:
        raise MitotypeError(f"ensemble members disagree on input size: {sorted(sizes)}")
    return dirs, metas


def write_calibration(model_dir: str | Path, calibration: dict[str, Calibration]) -> Path:
    """Store calibration maps in a trained model folder's metadata (``model.safetensors`` and ``model.json``),
    its tensors unchanged: a model trained before calibration, or one calibrated again on other labelled slides.

    The ONNX graph beside it, made from those same tensors, stays current (its record names the new file).
    Without torch: the tensors are read and written through safetensors' numpy API.
    """
    from safetensors.numpy import load_file, save_file

    from mitotype.ioutils import atomic_write, write_json_atomic
    from mitotype.models.onnx_graph import SOURCE_FILE, current_graph, sha256_of

    model_dir = Path(model_dir)
    unknown = sorted(set(calibration) - set(CALIBRATED_VIEWS))
    if unknown:
        raise MitotypeError(f"calibration views must be among {list(CALIBRATED_VIEWS)}, got {unknown}")
    raw, path = read_raw_meta(model_dir)
    meta = check_meta_fields(raw, path)
    graph_current = current_graph(model_dir) is not None
    meta["calibration"] = {view: cal.to_dict() for view, cal in calibration.items()}
    tensors = load_file(str(path))
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={META_KEY: json.dumps(meta)}))
    write_json_atomic(model_dir / META_FILE, meta)
    if graph_current:
        record = model_dir / SOURCE_FILE
        source = json.loads(record.read_text())
        write_json_atomic(record, source | {"source_sha256": sha256_of(path)})
    return path
