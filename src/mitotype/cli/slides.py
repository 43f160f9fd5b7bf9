"""``mitotype slides``: whole-slide images and a detector's points -> per slide atypical counts, fraction and
hotspot, a QuPath layer per slide and one HTML page for the cohort."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from mitotype.cli.options import add_allow_unfinished, add_runtime, parsed, positive_int, probability
from mitotype.cli.progress import log, progress_bars


def positive_number(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = parsed(text, float, "a number")
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def shard_spec(text: str) -> tuple[int, int]:
    """argparse type: ``I/N`` with 1 <= I <= N (a job array's task, 1-based)."""
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (e.g. 3/10), got {text!r}") from None
    if not sep or n < 1 or not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N, got {text!r}")
    return i, n


def _fraction(row: dict) -> str:
    if row.get("atypical_fraction") is None:
        return "-"
    low, high = row["atypical_fraction_ci_low"], row["atypical_fraction_ci_high"]
    return f"{row['atypical_fraction']:.3f} ({low:.2f}-{high:.2f})"


def print_cohort(cohort) -> None:  # cohort: mitotype.slides.CohortResult
    width = max([5, *(len(s.name) for s in cohort.slides)])
    print(f"{'slide':<{width}} {'figures':>7} {'atypical':>8} {'fraction (95% CI)':>19} {'hotspot':>7} "
          f"{'hs atyp':>7} {'tissue mm2':>10} {'fig/mm2':>7}  status")
    for s in cohort.slides:
        r = s.row
        if not s.ok:
            print(f"{s.name:<{width}} {'':>7} {'':>8} {'':>19} {'':>7} {'':>7} {'':>10} {'':>7}  failed")
            continue
        per_mm2 = "" if r.get("figures_per_mm2") is None else f"{r['figures_per_mm2']:.1f}"
        status = "ok (reused)" if s.reused else "ok"
        if r.get("points_outside"):
            status += f", {r['points_outside']} point(s) outside"
        print(f"{s.name:<{width}} {r['figures']:>7} {r['atypical']:>8} {_fraction(r):>19} {r['hotspot_figures']:>7} "
              f"{r['hotspot_atypical']:>7} {r['tissue_mm2']:>10.2f} {per_mm2:>7}  {status}")


def run_slides(args: argparse.Namespace) -> int:
    from mitotype.paths import check_folder_creatable
    from mitotype.slides import SlideOptions, analyse_slides

    options = SlideOptions(mpp=args.mpp, units=args.units, points_format=args.points_format,
                           min_probability=args.min_probability, point_names=tuple(args.points_class),
                           hotspot_area_mm2=args.hotspot_area, tta=args.tta, threshold=args.threshold)
    out = check_folder_creatable(args.out)  # created once the inputs are read: a refused input leaves nothing
    cohort = analyse_slides(args.slides, args.points, out, model=args.model, options=options, shard=args.shard,
                            resume=not args.restart, report=not args.no_report, device=args.device,
                            runtime=args.runtime, batch_size=args.batch_size,
                            allow_unfinished=args.allow_unfinished, progress=progress_bars(not args.no_progress),
                            log=log)
    print_cohort(cohort)
    threshold = "" if cohort.threshold is None else f", threshold {cohort.threshold:.3f}"
    print(f"model {cohort.model or '(none needed)'}{threshold}{', 8-view TTA' if args.tta else ''}; hotspot "
          f"{args.hotspot_area:g} mm2")
    written = ", ".join(str(path) for path in cohort.files.values())
    print(f"wrote {written} and a QuPath layer per slide under {out / 'slides'}")
    if cohort.problems:
        print(f"{len(cohort.problems)} problem(s); the other slides are done:")
        for line in cohort.problems:
            print(f"  {line}")
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from mitotype.slides.choices import DEFAULT_HOTSPOT_MM2, POINT_FORMATS, UNITS

    p = subparsers.add_parser(
        "slides", help="whole-slide images + a detector's points -> atypical count, fraction and hotspot per slide",
        description="Classifies every mitotic figure a detector found on each slide (the 32 µm field the model was "
        "trained on, read at the slide's own resolution), and writes per slide its counts, atypical fraction with "
        "a 95%% Wilson interval, tissue area, figures per mm² and hotspot (cohort.csv, cohort.json), its figures "
        "(figures.csv), a GeoJSON layer QuPath imports and one HTML page for the cohort. Finished slides are reused "
        "when run again; a slide that fails is listed at the end (exit status 1) and the others go on. "
        "See docs/slides.md.")
    p.add_argument("slides", nargs="+", help="slide files (any format OpenSlide reads, plain or pyramidal TIFF, "
                   "OME-TIFF), folders of slides (searched at any depth) or .txt lists of slide paths")
    p.add_argument("--points", required=True, type=Path,
                   help="the detector's points: one file (for one slide, or a CSV with a slide column for all), or "
                   "a folder of files named like the slides (NAME.json, NAME_*.csv, NAME/mitotic-figures.json)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--model", nargs="+", help="model folder(s) or a cv output folder (default: the shipped model)")
    p.add_argument("--tta", action="store_true", help="8-view dihedral test-time augmentation")
    p.add_argument("--threshold", type=probability, help="override the models' threshold on p(atypical) (on the "
                   "scale of the p_atypical reported: calibrated where every model stores a calibration)")
    p.add_argument("--mpp", type=positive_number, metavar="UM_PER_PX",
                   help="µm per pixel of slides whose files state no (plausible) resolution; 0.25 at 40x")
    p.add_argument("--units", choices=UNITS, default="auto",
                   help="units of the points' coordinates: auto (default: Track 1 files in mm when the slide has a "
                   "resolution, else px; CSV by its header; GeoJSON and boxes in px), px (level 0), um or mm")
    p.add_argument("--points-format", choices=POINT_FORMATS, default="auto",
                   help="track1 (MIDOG 2025 Track 1 mitotic-figures.json), geojson (QuPath), csv (x, y), boxes "
                   "(a detector's JSON of boxes: their centres); default: told from the file")
    p.add_argument("--min-probability", type=probability, metavar="P",
                   help="keep points whose detector score is at least P (re-thresholds a Track 1 file; 0 keeps all); "
                   "default: a Track 1 file's 'mitotic figure' points, every point of other formats")
    p.add_argument("--points-class", action="append", default=[], metavar="NAME",
                   help="keep only points of this name or class (repeatable; e.g. a QuPath class)")
    p.add_argument("--hotspot-area", type=positive_number, default=DEFAULT_HOTSPOT_MM2, metavar="MM2",
                   help=f"area of the hotspot, a 4:3 rectangle (default {DEFAULT_HOTSPOT_MM2}: 10 HPF of field number "
                   "22, the veterinary standard; 2: the MIDOG regions' and breast grading's 10 HPF)")
    p.add_argument("--shard", type=shard_spec, metavar="I/N",
                   help="analyse only the I-th of N shares of the slides (sorted by name), for a job array; a run "
                   "without --shard afterwards reuses every slide and writes the whole cohort")
    p.add_argument("--restart", action="store_true", help="recompute slides whose results exist")
    p.add_argument("--no-report", action="store_true", help="no HTML page (tables and GeoJSON only)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--device", default="auto")
    add_runtime(p)
    add_allow_unfinished(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_slides)
