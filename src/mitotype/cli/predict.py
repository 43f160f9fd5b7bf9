"""``mitotype predict``: p(atypical) for new figures (a folder, any dataset, or a TIFF stack), CSV or JSON."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from mitotype.cli.data_options import add_reader_arguments, reader_options
from mitotype.cli.options import (
    add_allow_unfinished,
    add_runtime,
    open_share,
    positive_int,
    probability,
    unfinished_notes,
    votes_text,
)
from mitotype.errors import MitotypeError


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


def run_predict(args: argparse.Namespace) -> int:
    from mitotype.api import load
    from mitotype.ioutils import atomic_write_text, replaced_together, write_json_atomic
    from mitotype.models.inference import check_adaptation
    from mitotype.paths import ensure_output_file

    if args.stack_size is not None and args.adapt_bn != "stack":
        raise MitotypeError("--stack-size applies to --adapt-bn stack only")
    if args.prevalence is not None and args.uncalibrated:
        raise MitotypeError("--prevalence re-expresses calibrated p(atypical); it cannot go with --uncalibrated "
                            "(the raw scores)")
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
                   "figures at once (domain), or on each --stack-size of them in input order (stack); CNN "
                   "backbones only, runs in PyTorch. Not advised: the statistics follow the input's share of "
                   "atypical figures, so where it has fewer than the training data (about 22 %%) more figures "
                   "are called atypical and specificity falls (docs/results.md, 'Prevalence shift')")
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
