"""``mitotype predict``, ``challenge`` and ``export``: trained models on new figures and in the container."""

from __future__ import annotations

import argparse
import csv
import io
import math
from pathlib import Path

from mitotype.errors import MitotypeError


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def probability(text: str) -> float:
    """argparse type: a finite number in [0, 1] (a decision threshold on p(atypical))."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value


def _load_inputs(args: argparse.Namespace):  # -> (ids, images)
    """Patches from a TIFF stack, or any dataset a reader understands (labels optional)."""
    from mitotype.serving.stack import read_stack

    src = Path(args.input)
    if src.is_file() and src.suffix.lower() in (".tif", ".tiff"):
        images = read_stack(src, max_pages=None)
        return [f"{src.name}#{i}" for i in range(len(images))], images
    from mitotype.training.inputs import load_figures

    figures = load_figures(src, fmt=args.data_format or "auto", on_error=args.on_error)
    return [r.uid for r in figures.records], figures.images


def run_predict(args: argparse.Namespace) -> int:
    from mitotype.ioutils import atomic_write_text, write_json_atomic
    from mitotype.models.predict import load_ensemble

    ensemble, _ = load_ensemble(args.model, device=args.device)
    ids, images = _load_inputs(args)
    threshold = args.threshold if args.threshold is not None else ensemble.threshold(args.tta)
    p = ensemble.predict(images, batch_size=args.batch_size, tta=args.tta)
    rows = [{"id": i, "p_atypical": float(q), "class": "atypical" if q >= threshold else "normal",
             "threshold": float(threshold)} for i, q in zip(ids, p)]
    out = Path(args.out)
    if out.suffix.lower() == ".json":
        write_json_atomic(out, rows)
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["id"])
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(out, buf.getvalue())
    n_atyp = sum(r["class"] == "atypical" for r in rows)
    print(f"{len(rows)} figures: {n_atyp} atypical, {len(rows) - n_atyp} normal "
          f"(threshold {threshold:.3f}{', 8-view TTA' if args.tta else ''}) -> {out}")
    return 0


def run_challenge_command(args: argparse.Namespace) -> int:
    from mitotype.serving.challenge import ChallengePaths, run_challenge

    paths = ChallengePaths.from_env()
    if args.input_dir:
        paths.input_dir = Path(args.input_dir)
    if args.output_dir:
        paths.output_dir = Path(args.output_dir)
    if args.model_dir:
        paths.model_dirs = [Path(args.model_dir)]
    out = run_challenge(paths, device=args.device, tta=None if args.tta is None else args.tta == "on")
    print(f"wrote {out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from mitotype.serving.export import export_model

    if not str(args.out).endswith((".tar.gz", ".tgz")):
        raise MitotypeError(f"{args.out}: the platform expects a .tar.gz model tarball")
    manifest = export_model(args.model, args.out, include_base=args.include_base, tta=not args.no_tta)
    print(f"packed {len(manifest['members'])} model(s), threshold {manifest['threshold']:.3f}, "
          f"TTA {'on' if manifest['tta'] else 'off'}, base weights: {manifest['base_weights'] or 'built in'}, "
          f"estimated GPU memory {manifest['estimated_gpu_gb']} GB -> {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict", help="p(atypical) for new figures (folder, dataset, or TIFF stack); CSV or JSON",
        description="Ensembles of fold models average probabilities; the threshold is the models' own, "
        "chosen on their validation slides, unless --threshold is given.")
    p.add_argument("input", help="a multi-page TIFF stack or a dataset any reader understands")
    p.add_argument("--model", nargs="+", required=True, help="model folder(s) or a cv output folder")
    p.add_argument("--out", required=True, type=Path, help="output .csv or .json")
    p.add_argument("--format", dest="data_format", help="reader name (default: auto)")
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail")
    p.add_argument("--tta", action="store_true", help="batched 8-view dihedral test-time augmentation")
    p.add_argument("--threshold", type=probability, help="override the stored threshold")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run_predict)

    p = subparsers.add_parser(
        "challenge", help="the MIDOG 2025 Track 2 container entry point (/input -> /output)",
        description="Reads the one TIFF stack in <input>/images/stacked-histopathology-roi-cropouts/ and "
        "writes <output>/multiple-mitotic-figure-classification.json; confidence = p(atypical). "
        "The model comes from /opt/ml/model (then /opt/app/model). Env overrides: MITOTYPE_INPUT_DIR, "
        "MITOTYPE_OUTPUT_DIR, MITOTYPE_MODEL_DIR.")
    p.add_argument("--input-dir", help="default /input")
    p.add_argument("--output-dir", help="default /output")
    p.add_argument("--model-dir", help="default /opt/ml/model, then /opt/app/model")
    p.add_argument("--tta", choices=["on", "off"], help="override the exported model's TTA setting")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run_challenge_command)

    p = subparsers.add_parser(
        "export", help="pack trained model(s) into the challenge's model tarball",
        description="Packs adapters, heads, configuration and threshold (and with --include-base the "
        "backbone weights) into a .tar.gz that the platform unpacks into /opt/ml/model. Refuses a model "
        "that needs more than the platform's 16 GB of GPU memory at batch 16.")
    p.add_argument("--model", nargs="+", required=True, help="model folder(s) or a cv output folder")
    p.add_argument("--out", required=True, type=Path, help="model tarball (.tar.gz)")
    p.add_argument("--include-base", action="store_true", help="pack the base backbone weights too")
    p.add_argument("--no-tta", action="store_true", help="disable TTA in the container")
    p.set_defaults(func=run_export)
