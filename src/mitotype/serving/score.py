"""The MIDOG 2025 Track 2 evaluator re-implemented, to score container outputs before submitting.

Inputs, as the platform's evaluation container sees them:

* ground truth ``ground_truth.json``: ``[{"image": "stack_1.tiff", "labels": ["normal", "atypical",
  ...], "tumordomains": [1, 1, ...]}, ...]``, one entry per stack, one label and domain per page.
* predictions, in one of two layouts:

  1. **Grand Challenge job list**: a ``predictions.json`` (the file, or a folder holding it) listing
     the algorithm jobs: ``pk``, ``inputs`` (the ``stacked-histopathology-roi-cropouts`` input names
     the image, ``image.name``) and ``outputs`` (the ``multiple-mitotic-figure-classification``
     output gives ``interface.relative_path``). Each job's output is read from
     ``<folder of predictions.json>/<pk>/output/<relative_path>``, as the platform mounts it. An
     output whose ``value`` is given inline (not ``null``) is used when that file does not exist.
  2. **Folder of per-stack files**: a folder without ``predictions.json`` holding ``<image stem>.json``
     (e.g. ``stack_1.json`` for ``stack_1.tiff``), each the container's output list.

  Images are matched to the ground truth by exact name, then by name without suffix.

Metrics, as the evaluator computes them: all figures of all stacks pooled; ``class`` gives the
decision (atypical positive), ``confidence`` the score for the ROC AUC; sensitivity, specificity,
balanced accuracy (the ranking metric), accuracy and ROC AUC overall and per tumour domain
(``domain_<value>``). Malformed outputs are rejected like the platform does (see
:func:`~mitotype.serving.outputs.validate_output`).

Differences from the official script, on purpose: an undefined metric (a domain with one class
only) is ``None`` instead of a warning-and-0 or a crash; a stack in the ground truth without a
prediction is an error unless ``allow_missing`` (the platform fails such a submission earlier).

Confidence semantics: by default (reading ``"p-atypical"``) ``confidence`` is each figure's ROC score as it
stands, as the final evaluator takes it (:data:`~mitotype.serving.outputs.CONFIDENCE_CONTRACT`; what
``mitotype challenge`` writes). Reading ``"predicted-class"`` rebuilds p(atypical) as ``confidence if class ==
"atypical" else 1 - confidence``, the reading of the superseded draft evaluator, for outputs of tools that
followed that draft.
Decisions (and so balanced accuracy) do not depend on the mode; the ROC AUC does.

The written metrics (``--json``) have the evaluator's ``metrics.json`` form: ``aggregates`` holds
``overall_*`` and ``domain_<d>`` blocks with the evaluator's key names and nothing else; counts and the
reading used sit beside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mitotype.errors import DataError
from mitotype.evaluation.metrics import classification_metrics
from mitotype.paths import refuse_special_file
from mitotype.serving.outputs import CLASSES, CONFIDENCE_READINGS, OUTPUT_SLUG, roc_score_from_entry, validate_output

__all__ = [
    "CONFIDENCE_MODES",
    "INPUT_SLUG",
    "READING_NAMES",
    "PredictedStack",
    "StackTruth",
    "check_metrics_path",
    "format_scores",
    "load_ground_truth",
    "load_predictions",
    "score_files",
    "score_predictions",
]

INPUT_SLUG = "stacked-histopathology-roi-cropouts"
CONFIDENCE_MODES = CONFIDENCE_READINGS
"""How ``confidence`` is read; the first (the final official evaluator's reading) is the default."""
READING_NAMES = {
    "p-atypical": "p(atypical) for every figure (as the final official evaluator reads it)",
    "predicted-class": "the probability of the predicted class (--confidence predicted-class: the superseded "
                       "draft evaluator's reading)",
}
_CLASS_IDS = {name: i for i, name in enumerate(CLASSES)}  # normal 0, atypical 1
_METRIC_KEYS = ("sensitivity", "specificity", "balanced_accuracy", "accuracy", "roc_auc")


@dataclass(frozen=True)
class StackTruth:
    """Ground truth of one stack: a 0/1 label and a tumour domain per page."""

    image: str
    labels: tuple[int, ...]
    domains: tuple[Any, ...]


@dataclass(frozen=True)
class PredictedStack:
    """One stack's output list as read (not yet validated) and where it came from."""

    image: str
    entries: Any
    source: str


def _read_json(path: Path) -> Any:
    refuse_special_file(path, "JSON file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:  # JSON is UTF-8 by definition; a Latin-1 or binary file is not JSON
        raise DataError(f"{path}: not UTF-8 text, so not JSON ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to be a challenge file") from None


# ------------------------------------------------------------------------------------- ground truth
def load_ground_truth(path: str | Path) -> dict[str, StackTruth]:
    """``ground_truth.json`` as ``{image name: StackTruth}``; malformed entries raise ``DataError``."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of stacks, got {type(data).__name__}")
    truth: dict[str, StackTruth] = {}
    for i, item in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(item, dict):
            raise DataError(f"{where} is a {type(item).__name__}, expected an object")
        missing = [k for k in ("image", "labels", "tumordomains") if k not in item]
        if missing:
            raise DataError(f"{where} lacks key(s) {missing}")
        image, labels, domains = item["image"], item["labels"], item["tumordomains"]
        if not isinstance(image, str) or not image:
            raise DataError(f"{where}: image must be a non-empty string, got {image!r}")
        where = f"{path}: entry {i} ({image})"
        if not isinstance(labels, list) or not isinstance(domains, list):
            raise DataError(f"{where}: labels and tumordomains must be lists")
        if len(labels) != len(domains):
            raise DataError(f"{where}: {len(labels)} labels but {len(domains)} tumordomains")
        if not labels:
            raise DataError(f"{where}: no labels")
        bad = [x for x in labels if x not in _CLASS_IDS]
        if bad:
            raise DataError(f"{where}: unknown label {bad[0]!r}; expected 'normal' or 'atypical'")
        if any(d is None or isinstance(d, (dict, list, bool)) for d in domains):
            raise DataError(f"{where}: tumordomains must be numbers or strings")
        if any(isinstance(d, float) and not math.isfinite(d) for d in domains):  # NaN != NaN: no domain holds it
            raise DataError(f"{where}: tumordomains must be finite numbers or strings, got NaN/Infinity")
        if image in truth:
            raise DataError(f"{where}: image listed twice")
        truth[image] = StackTruth(image, tuple(_CLASS_IDS[x] for x in labels), tuple(domains))
    if not truth:
        raise DataError(f"{path}: no stacks in the ground truth")
    return truth


# -------------------------------------------------------------------------------------- predictions
def _slot(values: Any, slug: str, job: str, kind: str) -> dict[str, Any]:
    if not isinstance(values, list):
        raise DataError(f"{job}: {kind} must be a list")
    for value in values:
        interface = value.get("interface") if isinstance(value, dict) else None
        if isinstance(interface, dict) and interface.get("slug") == slug:
            return value
    raise DataError(f"{job}: no {kind[:-1]} with interface slug {slug!r}")


def _load_job_list(listing: Path) -> dict[str, PredictedStack]:
    jobs = _read_json(listing)
    if not isinstance(jobs, list):
        raise DataError(f"{listing}: expected a JSON list of algorithm jobs, got {type(jobs).__name__}")
    if jobs and all(isinstance(j, dict) and "class" in j and "confidence" in j for j in jobs):
        raise DataError(f"{listing}: this is one stack's output, not a predictions.json job list; pass the "
                        "folder holding one <image stem>.json per stack")
    root = listing.parent
    out: dict[str, PredictedStack] = {}
    for i, job in enumerate(jobs):
        if not isinstance(job, dict) or not isinstance(job.get("pk"), str) or not job["pk"]:
            raise DataError(f"{listing}: job {i} is not an object with a string 'pk'")
        pk = job["pk"]
        where = f"{listing}: job {pk}"
        status = job.get("status", "Succeeded")
        if status != "Succeeded":
            raise DataError(f"{where} has status {status!r}; only succeeded jobs can be scored")
        slot_in = _slot(job.get("inputs"), INPUT_SLUG, where, "inputs")
        image = (slot_in.get("image") or {}).get("name") if isinstance(slot_in.get("image"), dict) else None
        if not isinstance(image, str) or not image:
            raise DataError(f"{where}: input {INPUT_SLUG!r} names no image (image.name)")
        slot_out = _slot(job.get("outputs"), OUTPUT_SLUG, where, "outputs")
        rel = slot_out["interface"].get("relative_path")
        if not isinstance(rel, str) or not rel:
            raise DataError(f"{where}: output {OUTPUT_SLUG!r} has no interface.relative_path")
        file = root / pk / "output" / rel
        if file.is_file():
            entries, source = _read_json(file), str(file)
        elif slot_out.get("value") is not None:
            entries, source = slot_out["value"], f"{where} (inline value)"
        else:
            raise DataError(f"{file}: output of job {pk} ({image}) not found")
        if image in out:
            raise DataError(f"{where}: image {image!r} was predicted by more than one job")
        out[image] = PredictedStack(image, entries, source)
    return out


def _load_folder(folder: Path) -> dict[str, PredictedStack]:
    out: dict[str, PredictedStack] = {}
    for file in sorted(folder.glob("*.json")):
        if file.name.startswith("."):
            continue
        out[file.stem] = PredictedStack(file.stem, _read_json(file), str(file))
    if not out:
        raise DataError(
            f"{folder}: no predictions found (expected predictions.json or one <image stem>.json per stack)"
        )
    return out


def load_predictions(path: str | Path) -> dict[str, PredictedStack]:
    """Predictions keyed by image name (job list) or image stem (folder); see the module docstring."""
    path = Path(path)
    if path.is_file():
        return _load_job_list(path)
    if path.is_dir():
        listing = path / "predictions.json"
        return _load_job_list(listing) if listing.is_file() else _load_folder(path)
    raise DataError(f"{path}: predictions not found (give predictions.json or a folder)")


def check_metrics_path(path: str | Path, predictions: str | Path) -> None:
    """Refuse a metrics file that would land among the per-stack outputs being scored: it would overwrite
    one of them, or be read as one more stack's output by the next run."""
    out, folder = Path(path), Path(predictions)
    if not folder.is_dir() or (folder / "predictions.json").is_file() or out.suffix.lower() != ".json":
        return
    try:
        inside = out.parent.resolve() == folder.resolve()
    except OSError:
        return
    if inside:
        raise DataError(f"{out}: lies in the predictions folder {folder}, where every .json is read as a stack's "
                        "output (it would overwrite one, or be scored as one next time); write it elsewhere")


# ------------------------------------------------------------------------------------------ scoring
def _match(image: str, predictions: Mapping[str, PredictedStack]) -> PredictedStack | None:
    if image in predictions:
        return predictions[image]
    stem = Path(image).stem
    if stem in predictions:
        return predictions[stem]
    hits = [p for k, p in predictions.items() if Path(k).stem == stem]
    return hits[0] if len(hits) == 1 else None


def _domain_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def score_predictions(
    truth: Mapping[str, StackTruth],
    predictions: Mapping[str, PredictedStack],
    confidence: str = "p-atypical",
    allow_missing: bool = False,
    truth_source: str = "the ground truth",
) -> dict[str, Any]:
    """Validate every output against its stack and compute the evaluator's metrics (``truth_source``, the
    ground truth's file, names it in the errors of stacks that do not match).

    Returns ``{"aggregates": {"overall_sensitivity", "overall_specificity",
    "overall_balanced_accuracy", "overall_roc_auc", "overall_accuracy", "domain_<d>": {...}},
    "counts": {..., "domains": {"domain_<d>": {"figures", "atypical"}}}, "confidence": mode,
    "images_missing": [...]}``; ``aggregates`` has exactly the keys of the evaluator's ``metrics.json``.
    Undefined values are ``None``.
    """
    if confidence not in CONFIDENCE_MODES:
        raise DataError(f"unknown confidence mode {confidence!r}; choose from {list(CONFIDENCE_MODES)}")
    used: set[str] = set()
    missing: list[str] = []
    ys, preds, scores, domains = [], [], [], []
    for image in sorted(truth):
        gt = truth[image]
        stack = _match(image, predictions)
        if stack is None:
            missing.append(image)
            continue
        used.add(stack.image)
        validate_output(stack.entries, len(gt.labels), stack.source)
        for entry, label, domain in zip(stack.entries, gt.labels, gt.domains):
            conf = float(entry["confidence"])
            ys.append(label)
            preds.append(_CLASS_IDS[entry["class"]])
            scores.append(roc_score_from_entry(entry["class"], conf, confidence))
            domains.append(domain)
    extra = sorted((p for p in predictions.values() if p.image not in used), key=lambda p: p.image)
    if extra:
        more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
        raise DataError(f"{extra[0].source}: no ground truth for predicted image(s) "
                        f"{', '.join(p.image for p in extra[:5])}{more} in {truth_source}")
    if missing and not allow_missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(
            f"{truth_source}: no prediction for {len(missing)} ground-truth image(s): "
            f"{', '.join(missing[:5])}{more}"
        )
    if not ys:
        raise DataError("nothing to score: no ground-truth image has a prediction")
    y, pred, score = np.asarray(ys), np.asarray(preds), np.asarray(scores)
    overall = classification_metrics(y, pred, score)
    aggregates: dict[str, Any] = {f"overall_{k}": overall[k] for k in _METRIC_KEYS}
    domain_counts: dict[str, dict[str, int]] = {}
    for d in sorted(set(domains), key=_domain_key):
        mask = np.asarray([x == d for x in domains])
        m = classification_metrics(y[mask], pred[mask], score[mask])
        aggregates[f"domain_{d}"] = {k: m[k] for k in _METRIC_KEYS}
        domain_counts[f"domain_{d}"] = {"figures": m["n"], "atypical": m["n_pos"]}
    return {
        "aggregates": aggregates,
        "counts": {
            "images": len(truth) - len(missing),
            "figures": overall["n"],
            "atypical": overall["n_pos"],
            "tp": overall["tp"],
            "fp": overall["fp"],
            "tn": overall["tn"],
            "fn": overall["fn"],
            "domains": domain_counts,
        },
        "confidence": confidence,
        "images_missing": missing,
    }


def score_files(
    ground_truth: str | Path,
    predictions: str | Path,
    confidence: str = "p-atypical",
    allow_missing: bool = False,
) -> dict[str, Any]:
    """:func:`score_predictions` on files: ``ground_truth.json`` and a predictions file or folder."""
    return score_predictions(
        load_ground_truth(ground_truth), load_predictions(predictions), confidence, allow_missing,
        truth_source=str(ground_truth),
    )


def format_scores(result: Mapping[str, Any]) -> str:
    """A plain-text table of :func:`score_predictions`'s result for the terminal."""

    def num(v: Any) -> str:
        return "   n/a" if v is None else f"{v:6.3f}"

    agg = result["aggregates"]
    counts = result["counts"]
    reading = READING_NAMES[result["confidence"]]
    lines = [
        f"scored {counts['images']} stack(s), {counts['figures']} figure(s), {counts['atypical']} atypical; "
        f"confidence read as {reading}",
        f"{'':<14}{'figures':>8}{'atypical':>9}  {'bal.acc':>7} {'sens':>6} {'spec':>6} {'acc':>6} "
        f"{'ROC AUC':>7}",
    ]
    rows = [("overall", {k[len("overall_") :]: v for k, v in agg.items() if k.startswith("overall_")},
             {"figures": counts["figures"], "atypical": counts["atypical"]})]
    rows += [(k, v, counts["domains"][k]) for k, v in agg.items() if k.startswith("domain_")]
    for name, m, c in rows:
        lines.append(
            f"{name:<14}{c['figures']:>8}{c['atypical']:>9}  {num(m['balanced_accuracy']):>7} "
            f"{num(m['sensitivity'])} {num(m['specificity'])} {num(m['accuracy'])} {num(m['roc_auc']):>7}"
        )
    if result.get("images_missing"):
        lines.append(f"not scored (no prediction): {', '.join(result['images_missing'])}")
    return "\n".join(lines)
