"""``mitotype predict``, ``challenge`` and ``export``: trained models on new figures and in the container."""

from __future__ import annotations

import argparse
import csv
import io
import math
from pathlib import Path

from mitotype.cli.data_options import add_reader_arguments, reader_options
from mitotype.cli.extras import needs_training_extra
from mitotype.errors import MitotypeError
from mitotype.serving.outputs import CONFIDENCE_CONTRACT


def open_share(text: str) -> float:
    """A share strictly between 0 and 1 (a prevalence), for argparse."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a share strictly between 0 and 1, got {text}")
    return value


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


def _load_inputs(args: argparse.Namespace):  # -> FigureBatch
    """Patches from a TIFF stack, or any dataset a reader understands (labels optional): the API's reading."""
    from mitotype.api import read_figures
    from mitotype.paths import ensure_output_file

    figures = read_figures(args.input, format=args.data_format, domain=args.domain, on_error=args.on_error,
                           reader_options=reader_options(args))
    for warning in figures.warnings:
        print(f"warning: {warning}")
    for note in figures.notes:
        print(f"note: {note}")
    for out, suffixes in ((args.out, (".csv", ".json")), (args.report, (".html", ".htm"))):
        if out and figures.sources:  # a label file found inside the input folder, never named on the command line
            ensure_output_file(out, suffixes, figures.sources)
    return figures


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


def run_predict(args: argparse.Namespace) -> int:
    from mitotype.api import load
    from mitotype.ioutils import atomic_write_text, replaced_together, write_json_atomic
    from mitotype.models.inference import check_adaptation
    from mitotype.paths import ensure_output_file

    if args.stack_size is not None and args.adapt_bn != "stack":
        raise MitotypeError("--stack-size applies to --adapt-bn stack only")
    check_adaptation(args.adapt_bn, args.runtime)  # before any model or figure is read
    inputs = (args.input, args.meta_csv)
    ensure_output_file(args.out, (".csv", ".json"), inputs)
    if args.report:  # checked before the work, like --out: a failed gallery must not follow a finished run
        ensure_output_file(args.report, (".html", ".htm"), inputs)
    models = args.model
    if not models:
        from mitotype.models.shipped import get_shipped_model

        shipped = get_shipped_model()
        models = [shipped.folder]
        print(f"using the shipped model {shipped.name} ({shipped.folder / 'MODEL_CARD.md'}); "
              "pass --model to use your own")
    classifier = load(models[0] if len(models) == 1 else models, device=args.device,
                      allow_unfinished=args.allow_unfinished, runtime=args.runtime)
    unfinished_notes(classifier.models, args.allow_unfinished)
    figures = _load_inputs(args)
    result = classifier.predict(figures, tta=args.tta, batch_size=args.batch_size, threshold=args.threshold,
                                adapt_bn=args.adapt_bn, stack_size=16 if args.stack_size is None else args.stack_size,
                                calibrated=not args.uncalibrated, prevalence=args.prevalence)
    threshold = result.threshold
    if result.models_not_adapted:
        print(f"note: --adapt-bn {args.adapt_bn} changed nothing for {len(result.models_not_adapted)} model(s) "
              f"without BatchNorm layers (e.g. {result.models_not_adapted[0]}): AdaBN applies to BatchNorm "
              "networks only")
    rows = result.rows()
    out = Path(args.out)
    report = None if args.report is None else Path(args.report) if args.report else out.with_suffix(".html")
    with replaced_together([out] if report is None else [out, report]) as staged:  # the CSV and HTML as one
        if out.suffix.lower() == ".json":
            write_json_atomic(staged[0], rows)
        else:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["id"])
            writer.writeheader()
            writer.writerows(rows)
            atomic_write_text(staged[0], buf.getvalue())
        if report is not None:
            from mitotype.evaluation.gallery import write_gallery

            records = figures.records
            write_gallery(staged[1], figures.images, result.p_atypical, threshold, result.ids, labels=result.labels,
                          domains=[r.domain if r else None for r in records] if records else None,
                          votes=[votes_text(r) if r else None for r in records] if records else None,
                          title=f"mitotype predict: {args.input}",
                          meta_lines=[f"models: {', '.join(str(d) for d in classifier.models)}",
                                      f"threshold {threshold:.3f}{', 8-view TTA' if args.tta else ''}"])
    n_atyp = int(result.atypical.sum())
    scale = f"p calibrated at {result.prevalence:.0%} atypical" if result.calibrated else "raw scores"
    print(f"{len(rows)} figures: {n_atyp} atypical, {len(rows) - n_atyp} normal "
          f"(threshold {threshold:.3f}{', 8-view TTA' if args.tta else ''}; {scale}) -> {out}")
    if report is not None:
        print(f"gallery: {report}")
    return 0


def votes_text(record) -> str | None:  # FigureRecord -> "2/3", or None when no vote is known
    return f"{record.atypical_votes}/{record.votes_cast}" if record.votes_cast else None


def run_challenge_command(args: argparse.Namespace) -> int:
    from mitotype.serving.challenge import ChallengePaths, model_dir_from, run_challenge

    paths = ChallengePaths.from_env()
    if args.input_dir:
        paths.input_dir = Path(args.input_dir)
    if args.output_dir:
        paths.output_dir = Path(args.output_dir)
    if args.model_dir:
        paths.model_dirs = [model_dir_from(args.model_dir)]
    out = run_challenge(paths, device=args.device, tta=None if args.tta is None else args.tta == "on",
                        runtime=args.runtime, adapt_bn=args.adapt_bn == "stack",
                        allow_unfinished=args.allow_unfinished, warn=lambda note: print(f"warning: {note}"))
    if args.allow_unfinished:
        from mitotype.models.predict import find_model_dirs
        from mitotype.serving.challenge import find_model_root

        unfinished_notes(find_model_dirs(find_model_root(paths.model_dirs)), True)
    print(f"wrote {out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from mitotype.paths import ensure_output_file
    from mitotype.serving.export import export_model

    if not str(args.out).endswith((".tar.gz", ".tgz")):
        raise MitotypeError(f"{args.out}: the platform expects a .tar.gz model tarball")
    ensure_output_file(args.out, (".tar.gz", ".tgz"))
    manifest = export_model(args.model, args.out, include_base=args.include_base, tta=not args.no_tta,
                            allow_unfinished=args.allow_unfinished, onnx=args.onnx)
    unfinished_notes([Path(s) for s in manifest["sources"]], args.allow_unfinished)
    # the threshold the container applies: the 8-view TTA one when TTA is on
    used = manifest["threshold_tta"] if manifest["tta"] else manifest["threshold"]
    print(f"packed {len(manifest['members'])} model(s), threshold {used:.3f} "
          f"({'8-view TTA' if manifest['tta'] else 'single view'}), "
          f"TTA {'on' if manifest['tta'] else 'off'}, base weights: {manifest['base_weights'] or 'built in'}, "
          f"estimated GPU memory {manifest['estimated_gpu_gb']} GB{', ONNX graphs for the CPU' if args.onnx else ''}"
          f" -> {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict", help="p(atypical) for new figures (folder, dataset, or TIFF stack); CSV or JSON",
        description="Ensembles of fold models average probabilities; the threshold is the models' own, "
        "chosen on their validation slides, unless --threshold is given. One row per figure: "
        "id (file uid, or <stack>#<page>), p_atypical (the probability that the figure is atypical, "
        "whatever the decision), class (atypical when p_atypical >= threshold, else normal), "
        "threshold (the threshold applied), and label (the input's own label, where it has one). "
        "For the challenge JSON use `mitotype challenge`.")
    p.add_argument("input", help="a multi-page TIFF stack, a folder of patches (any depth, labels not needed), "
                   "a .txt list of patch paths, one patch image, or any dataset a reader understands")
    p.add_argument("--model", nargs="+", help="model folder(s) or a cv output folder (default: the model that "
                   "ships with mitotype, see `mitotype models list`)")
    p.add_argument("--out", required=True, type=Path, help="output file: .csv or .json")
    add_reader_arguments(p)
    p.add_argument("--tta", action="store_true", help="batched 8-view dihedral test-time augmentation")
    p.add_argument("--threshold", type=probability, help="override the stored threshold (on the scale of p_atypical)")
    p.add_argument("--prevalence", type=open_share, metavar="SHARE",
                   help="the share of atypical figures you expect in the input (e.g. 0.1): p_atypical, calibrated "
                   "on the models' validation slides at their share (about 22 %%), is re-expressed at it by Bayes' "
                   "rule; decisions do not change (the threshold moves with it)")
    p.add_argument("--uncalibrated", action="store_true",
                   help="report the models' raw scores instead of calibrated p(atypical) (decisions do not change)")
    p.add_argument("--adapt-bn", choices=("off", "domain", "stack"), default="off",
                   help="re-estimate BatchNorm statistics on the input (AdaBN, no labels used): on all its "
                   "figures at once (domain: the input is one scanner/lab), or on each --stack-size of them "
                   "in input order (stack); CNN backbones only, runs in PyTorch")
    p.add_argument("--stack-size", type=positive_int, default=None,
                   help="figures per stack for --adapt-bn stack (default 16)")
    p.add_argument("--report", nargs="?", const="", metavar="HTML",
                   help="also write an HTML gallery of the figures sorted by p(atypical) with the threshold "
                   "marked (default path: --out with .html)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--device", default="auto")
    add_runtime(p)
    add_allow_unfinished(p)
    p.set_defaults(func=run_predict)

    p = subparsers.add_parser(
        "challenge", help="the MIDOG 2025 Track 2 container entry point (/input -> /output)",
        description="Reads the one TIFF stack in <input>/images/stacked-histopathology-roi-cropouts/ and "
        "writes <output>/multiple-mitotic-figure-classification.json: per page {class, confidence}, where class "
        "follows the model's stored threshold and " + CONFIDENCE_CONTRACT + ". "
        "The model comes from /opt/ml/model (then /opt/app/model). Env overrides: MITOTYPE_INPUT_DIR, "
        "MITOTYPE_OUTPUT_DIR, MITOTYPE_MODEL_DIR (a folder, or 'shipped' for the model that ships with mitotype).")
    p.add_argument("--input-dir", help="default /input")
    p.add_argument("--output-dir", help="default /output")
    p.add_argument("--model-dir", help="default /opt/ml/model, then /opt/app/model; 'shipped' = the model "
                   "that ships with mitotype")
    p.add_argument("--tta", choices=["on", "off"], help="override the exported model's TTA setting")
    p.add_argument("--adapt-bn", choices=("off", "stack"), default="off",
                   help="re-estimate BatchNorm statistics on the input stack's own figures (AdaBN, no labels)")
    p.add_argument("--device", default="auto")
    add_runtime(p)
    add_allow_unfinished(p)
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
    p.add_argument("--onnx", action="store_true",
                   help="pack each member's ONNX graph too: the container then runs ONNX Runtime on a CPU-only "
                   "machine (about 3x faster than PyTorch there; needs the onnx extra)")
    add_allow_unfinished(p)
    p.set_defaults(func=run_export)
    needs_training_extra(p)
