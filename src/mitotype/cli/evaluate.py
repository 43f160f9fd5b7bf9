"""``mitotype evaluate``: trained model(s) scored on a labelled dataset, with the metrics and report of ``cv``."""

from __future__ import annotations

import argparse
from pathlib import Path

from mitotype.cli.data_options import add_reader_arguments, reader_options
from mitotype.cli.options import (
    add_allow_unfinished,
    add_runtime,
    positive_int,
    probability,
    unfinished_notes,
    votes_text,
)
from mitotype.cli.summary import metric_text, print_summary


def run_evaluate_command(args: argparse.Namespace) -> int:
    import numpy as np

    from mitotype.data.figures import load_figures, reading_notes
    from mitotype.data.records import require_labels
    from mitotype.evaluation.gallery import write_gallery
    from mitotype.evaluation.report import PLOTS_MISSING, plots_available, write_predictions_csv, write_report
    from mitotype.evaluation.summary import check_evaluation_folder, environment, prediction_rows, summarise
    from mitotype.ioutils import replaced_together, write_json_atomic
    from mitotype.models.inference import load_predictor
    from mitotype.paths import ensure_output_dir

    check_evaluation_folder(args.out, args.model)
    out = ensure_output_dir(args.out)
    ensemble = load_predictor(args.model, device=args.device, allow_unfinished=args.allow_unfinished,
                              runtime=args.runtime)
    unfinished_notes(ensemble.dirs, args.allow_unfinished)
    figures = load_figures(args.data, fmt=args.data_format, domain=args.domain, on_error=args.on_error,
                           cache_dir=None, reader_options=reader_options(args))
    require_labels(figures.records, "evaluate")
    for note in reading_notes(figures):
        print(f"note: {note}")
    threshold = args.threshold if args.threshold is not None else ensemble.threshold(args.tta)
    p = ensemble.predict(figures.images, batch_size=args.batch_size, tta=args.tta)
    rows = prediction_rows(figures.records, np.arange(len(figures.records)), p, threshold, "evaluate",
                           tta=args.tta)
    results = {"summary": summarise(rows), "models": [str(d) for d in ensemble.dirs],
               "threshold": threshold, "tta": args.tta, "data": str(args.data), "environment": environment(),
               "config": ensemble.metas[0]["config"]}
    names = ("results.json", "predictions.csv", "report.html", "gallery.html")
    with replaced_together([out / name for name in names]) as staged:  # replaced as one set, never a mix
        write_json_atomic(staged[0], results)
        write_predictions_csv(staged[1], rows)
        write_report(staged[2], results, rows, title="mitotype evaluation")
        write_gallery(staged[3], figures.images, p, threshold, [r.uid for r in figures.records],
                      labels=[r.label for r in figures.records], domains=[r.domain for r in figures.records],
                      votes=[votes_text(r) for r in figures.records],
                      title=f"mitotype evaluate: {args.data}",
                      meta_lines=[f"models: {', '.join(str(d) for d in ensemble.dirs)}",
                                  f"threshold {threshold:.3f}{', 8-view TTA' if args.tta else ''}"])
    if not plots_available():
        print(f"note: report.html holds the tables only: {PLOTS_MISSING}")
    print_summary(results)
    pooled = results["summary"]["pooled"]
    print(f"pooled sensitivity {metric_text(pooled.get('sensitivity'))}, "
          f"specificity {metric_text(pooled.get('specificity'))} "
          f"at threshold {threshold:.3f}{' (8-view TTA)' if args.tta else ''}")
    print(f"report: {out / 'report.html'}  gallery: {out / 'gallery.html'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score trained model(s) on a labelled dataset, with the same metrics and report",
        description="A model folder or a folder of fold models (ensembled by averaging probabilities).")
    p.add_argument("--model", nargs="+", required=True, help="model folder(s) or a cv output folder")
    p.add_argument("--data", required=True, help="labelled dataset")
    add_reader_arguments(p)
    p.add_argument("--threshold", type=probability, help="override the models' stored threshold (on the scale of the "
                   "p_atypical reported: calibrated where every model stores a calibration, as the model card says)")
    p.add_argument("--tta", action="store_true", help="dihedral test-time augmentation")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    add_runtime(p)
    add_allow_unfinished(p)
    p.set_defaults(func=run_evaluate_command)
