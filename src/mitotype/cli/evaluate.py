"""``mitotype cv``, ``ablate``, ``evaluate`` and ``demo``: does a model generalise, and what earns its cost."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mitotype.cli.data_options import add_reader_arguments, reader_options
from mitotype.cli.deploy import add_allow_unfinished, add_runtime, positive_int, probability, votes_text
from mitotype.cli.extras import needs_training_extra
from mitotype.cli.progress import log, progress_bars
from mitotype.cli.train import add_config_arguments, config_from_args, load_data
from mitotype.errors import ConfigError


def run_cv_command(args: argparse.Namespace) -> int:
    from mitotype.experiments.cv import run_cv
    from mitotype.paths import check_folder_creatable

    k = fold_count(args)
    config = config_from_args(args)
    check_folder_creatable(args.out)  # created once the folds are known: a refused --folds leaves nothing
    figures = load_data(config)
    results = run_cv(config, figures, args.out, scheme=args.scheme, k=k, resume=not args.restart,
                     tta=args.tta, progress=progress_bars(not args.no_progress), log=log, only=args.folds)
    print_summary(results)
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def print_summary(results: dict) -> None:
    s = results["summary"]
    # sensitivity and specificity beside balanced accuracy: a threshold that misses one domain shows at a glance
    print(f"{'held-out domain':<28} {'n':>6} {'AMF':>5} {'bal.acc':>8} {'95% CI':>13} {'sens':>6} {'spec':>6} "
          f"{'AUC':>6}")
    for name, d in s["per_domain"].items():
        ci = (d.get("ci") or {}).get("balanced_accuracy")
        ci_s = f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else ""
        print(f"{name[:28]:<28} {d['n']:>6} {d['n_pos']:>5} {_f(d['balanced_accuracy']):>8} {ci_s:>13} "
              f"{_f(d.get('sensitivity')):>6} {_f(d.get('specificity')):>6} {_f(d.get('roc_auc')):>6}")
    pooled = s["pooled"]
    print(f"mean ± sd over domains: {_f(s['domain_mean'])} ± {_f(s['domain_std'])}   "
          f"pooled: {_f(pooled['balanced_accuracy'])} (sens {_f(pooled.get('sensitivity'))}, "
          f"spec {_f(pooled.get('specificity'))}, AUC {_f(pooled.get('roc_auc'))})")


def run_ablate_command(args: argparse.Namespace) -> int:
    from mitotype.experiments.cv import run_ablation
    from mitotype.paths import check_folder_creatable

    k = fold_count(args)
    config = config_from_args(args)
    check_folder_creatable(args.out)
    figures = load_data(config)
    table = run_ablation(config, figures, args.out, strategies=args.strategies, scheme=args.scheme, k=k,
                         progress=progress_bars(not args.no_progress), log=log)
    print(f"{'variant':<24} {'pooled bal.acc':>14} {'Δ vs all':>9} {'95% CI':>17}")
    for name, v in table["variants"].items():
        d = v.get("delta_vs_all")
        delta = f"{d['delta']:+.3f}" if d else ""
        ci = f"{d['ci_low']:+.3f}..{d['ci_high']:+.3f}" if d else ""
        print(f"{name:<24} {_f(v['pooled']['balanced_accuracy']):>14} {delta:>9} {ci:>17}")
    print(f"table: {Path(args.out) / 'ablation.json'}")
    return 0


def run_evaluate_command(args: argparse.Namespace) -> int:
    import numpy as np

    from mitotype.cli.deploy import unfinished_notes
    from mitotype.data.figures import load_figures, reading_notes
    from mitotype.data.records import require_labels
    from mitotype.evaluation.gallery import write_gallery
    from mitotype.evaluation.report import PLOTS_MISSING, plots_available, write_predictions_csv, write_report
    from mitotype.evaluation.summary import environment, prediction_rows, summarise
    from mitotype.ioutils import write_json_atomic
    from mitotype.models.inference import load_predictor
    from mitotype.paths import ensure_output_dir

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
    write_json_atomic(out / "results.json", results)
    write_predictions_csv(out / "predictions.csv", rows)
    write_report(out / "report.html", results, rows, title="mitotype evaluation")
    write_gallery(out / "gallery.html", figures.images, p, threshold, [r.uid for r in figures.records],
                  labels=[r.label for r in figures.records], domains=[r.domain for r in figures.records],
                  votes=[votes_text(r) for r in figures.records],
                  title=f"mitotype evaluate: {args.data}",
                  meta_lines=[f"models: {', '.join(str(d) for d in ensemble.dirs)}",
                              f"threshold {threshold:.3f}{', 8-view TTA' if args.tta else ''}"])
    if not plots_available():
        print(f"note: report.html holds the tables only: {PLOTS_MISSING}")
    print_summary(results)
    pooled = results["summary"]["pooled"]
    print(f"pooled sensitivity {_f(pooled.get('sensitivity'))}, specificity {_f(pooled.get('specificity'))} "
          f"at threshold {threshold:.3f}{' (8-view TTA)' if args.tta else ''}")
    print(f"report: {out / 'report.html'}  gallery: {out / 'gallery.html'}")
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    from mitotype.data.synth import write_synthetic
    from mitotype.experiments.cv import run_cv
    from mitotype.training.config import load_config
    from mitotype.training.inputs import load_figures

    start = time.perf_counter()
    out = Path(args.out)
    data_dir = out / "synthetic-data"
    print(f"1/3 drawing the synthetic multi-domain dataset into {data_dir}")
    write_synthetic(data_dir, n_per_domain=args.n_per_domain, seed=args.seed)
    config = load_config(preset="demo", overrides=[f"data.path={data_dir}", f"seed={args.seed}", *args.overrides])
    figures = load_figures(data_dir, fmt=config.data.format, domain=config.data.domain,
                           cache_dir=out / "cache")
    print(f"2/3 leave-one-domain-out cross-validation: {len(figures.records)} figures, backbone "
          f"{config.model.backbone}, all strategies on")
    results = run_cv(config, figures, out / "cv", scheme="lodo", resume=True,
                     progress=progress_bars(not args.no_progress), log=log)
    print("3/3 summary")
    print_summary(results)
    print(f"report: {out / 'cv' / 'report.html'}  ({time.perf_counter() - start:.0f} s in all)")
    return 0


def fold_count(args: argparse.Namespace) -> int:
    """``--k`` for k-fold (5 when not given); refused with leave-one-domain-out, whose folds are the domains."""
    if args.scheme == "lodo" and args.k is not None:
        raise ConfigError("--k applies to --scheme kfold; leave-one-domain-out has one fold per domain")
    return 5 if args.k is None else args.k


def _add_cv_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheme", choices=["lodo", "kfold"], default="lodo",
                   help="leave-one-domain-out (default) or stratified k-fold grouped by slide")
    p.add_argument("--k", type=positive_int, default=None, help="folds for --scheme kfold (default 5)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cv", help="cross-validate: leave-one-domain-out or slide-grouped k-fold, with a report",
        description="Train one model per fold; the held-out domain never reaches model selection or "
        "the threshold. Writes results.json, predictions.csv (out-of-fold) and report.html. "
        "Finished folds are reused when the command is run again.")
    add_config_arguments(p)
    _add_cv_options(p)
    p.add_argument("--folds", nargs="+", metavar="FOLD",
                   help="run only these folds, in this order (held-out domain or fold names, e.g. TUPAC16): to "
                   "spread folds over machines; a later run without it reuses them")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--tta", action="store_true", help="dihedral test-time augmentation on held-out figures")
    p.add_argument("--restart", action="store_true", help="retrain finished folds instead of reusing them")
    p.set_defaults(func=run_cv_command)
    needs_training_extra(p)

    p = subparsers.add_parser(
        "ablate", help="cross-validate with all strategies, then with each one switched off",
        description="Tabulates the change in pooled balanced accuracy of each strategy switched off, "
        "with 95%% intervals from a paired bootstrap over slides.")
    add_config_arguments(p)
    _add_cv_options(p)
    p.add_argument("--strategies", nargs="+", help="only these strategies (default: those on by default or in the "
                                                      "configuration)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(func=run_ablate_command)
    needs_training_extra(p)

    p = subparsers.add_parser(
        "evaluate", help="score trained model(s) on a labelled dataset, with the same metrics and report",
        description="A model folder or a folder of fold models (ensembled by averaging probabilities).")
    p.add_argument("--model", nargs="+", required=True, help="model folder(s) or a cv output folder")
    p.add_argument("--data", required=True, help="labelled dataset")
    add_reader_arguments(p)
    p.add_argument("--threshold", type=probability, help="override the models' stored threshold")
    p.add_argument("--tta", action="store_true", help="dihedral test-time augmentation")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    add_runtime(p)
    add_allow_unfinished(p)
    p.set_defaults(func=run_evaluate_command)

    p = subparsers.add_parser(
        "demo", help="the whole job on a fresh machine: synthetic data, LODO cross-validation, report",
        description="Draws a synthetic 4-domain dataset, runs leave-one-domain-out cross-validation with "
        "a small ImageNet-pretrained backbone and every strategy on, and writes the HTML report "
        "(a few minutes on 2 CPU cores).")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out)")
    p.add_argument("--n-per-domain", type=int, default=150, help="figures per synthetic domain")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of the demo preset")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_demo_command)
    needs_training_extra(p)
