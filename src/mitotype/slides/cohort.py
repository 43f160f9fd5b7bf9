"""A cohort of slides: resumable, failure-tolerant, splittable over a job array without coordination.

Per slide, ``OUT/slides/NAME/`` holds ``figures.csv``, ``NAME.geojson`` (for QuPath), ``gallery.html``,
``thumbnail.jpg`` and, written last, ``result.json``: its cohort row and the *key* it was computed under (the
slide file's name, size and modification time; a hash of the points the file gives for it; the model weights'
hashes; every option). A slide whose ``result.json`` carries the current key is reused, not recomputed, so a
stopped run continues where it stopped and a finished cohort re-runs in moments (and never loads a model).
A slide that fails (unreadable, no resolution, no points...) is listed with its one-line reason; the others go
on. Every file is written atomically.

``shard=(i, n)``: the slides sorted by name, this run takes every n-th from the i-th (1-based), so n jobs of a
scheduler's array share a cohort with no coordination; each writes ``cohort.shard-i-of-n.csv``/``.json`` and
``figures.shard-i-of-n.csv``. A run without ``shard`` afterwards reuses every slide's results and writes the
whole cohort's ``cohort.csv``, ``cohort.json``, ``figures.csv`` and ``report.html``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mitotype import __version__
from mitotype.errors import DataError, MissingExtraError, MitotypeError, describe_os_error
from mitotype.extras import importable
from mitotype.ioutils import atomic_write_text, write_json_atomic
from mitotype.slides.analyse import COHORT_COLUMNS, FIGURE_COLUMNS, SlideOptions, analyse_slide
from mitotype.slides.classify import Classifier, load_classifier, model_identity
from mitotype.slides.fields import FIELD_UM, TARGET_MPP
from mitotype.slides.pairing import SlideInput, find_slides, merge_point_sets, pair_points
from mitotype.slides.points import PointSet, read_point_file
from mitotype.slides.qupath import hotspot_feature, write_slide_geojson
from mitotype.slides.report import SlidePage, write_cohort_page, write_slide_gallery, write_thumbnail
from mitotype.slides.wsi import open_slide

RESULTS_VERSION = 1
"""Bumped when what a slide's results hold changes, so older results are recomputed, not misread."""
RESULT_FILE = "result.json"

ProgressFactory = Callable[[int, str], Any]
"""``factory(total, description)`` -> a bar with ``update(n)`` and ``close()`` (the CLI's tqdm)."""


class _ModelUnusable(Exception):
    """The model could not be loaded: no slide's fault, so the run stops with its one line instead of every
    slide failing alike (and the model being loaded again for each)."""

    def __init__(self, error: MitotypeError | OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _model_errors_end_the_run(predict: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``predict`` whose failures (weights found non-finite once they run...) are the model's, not a slide's."""
    def guarded(images: Any) -> Any:
        try:
            return predict(images)
        except (MitotypeError, OSError) as exc:
            raise _ModelUnusable(exc) from None
    return guarded


@dataclass
class SlideResult:
    """One slide of a cohort: its cohort row, its figures (``None`` for a failed slide) and how it went."""

    name: str
    row: dict[str, Any]
    figures: list[dict[str, Any]] | None
    reused: bool = False
    notes: list[str] = field(default_factory=list)
    folder: Path | None = None

    @property
    def ok(self) -> bool:
        return self.row.get("status") == "ok"

    @property
    def problem(self) -> str | None:
        return self.row.get("problem")


@dataclass
class CohortResult:
    slides: list[SlideResult]
    unpaired_points: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    """What was written: ``cohort_csv``, ``cohort_json``, ``figures_csv``, ``report``."""
    model: str | None = None
    threshold: float | None = None
    shard: tuple[int, int] | None = None

    @property
    def failed(self) -> list[SlideResult]:
        return [s for s in self.slides if not s.ok]

    @property
    def problems(self) -> list[str]:
        """One line per slide that failed and per points file without a slide."""
        return [f"{s.name}: {s.problem}" for s in self.failed] + list(self.unpaired_points)

    def rows(self) -> list[dict[str, Any]]:
        """The cohort table: one row per slide with the columns of ``cohort.csv`` (failed slides with their reason)."""
        return [dict(s.row) for s in self.slides]

    def figure_rows(self) -> list[dict[str, Any]]:
        """Every classified figure of every slide, with the columns of ``figures.csv``."""
        return [dict(f) for s in self.slides for f in (s.figures or [])]

    def to_pandas(self, figures: bool = False) -> Any:
        """The cohort table (or, with ``figures``, the figure table) as a ``pandas.DataFrame`` (install pandas)."""
        try:
            import pandas
        except ImportError:
            raise MitotypeError("CohortResult.to_pandas needs pandas: pip install pandas") from None
        return pandas.DataFrame(self.figure_rows() if figures else self.rows(),
                                columns=list(FIGURE_COLUMNS if figures else COHORT_COLUMNS))


def shard_slides(items: Sequence[SlideInput], shard: tuple[int, int] | None) -> list[SlideInput]:
    """This shard's slides: sorted by name, every n-th from the i-th (deterministic, no coordination)."""
    ordered = sorted(items, key=lambda item: item.name)
    if shard is None:
        return ordered
    index, count = shard
    if not 1 <= index <= count:
        raise DataError(f"--shard {index}/{count}: the shard must be between 1 and {count}")
    return ordered[index - 1 :: count]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _slide_identity(path: Path) -> dict[str, Any]:
    try:
        stat = path.stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the slide ({describe_os_error(exc)})") from None
    return {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _points_for(item: SlideInput, fmt: str) -> PointSet:
    if item.point_set is not None:
        return item.point_set
    sets = read_point_file(item.points, fmt)  # type: ignore[arg-type]
    if len(sets) == 1:
        return sets[0]
    from mitotype.slides.pairing import slide_name

    mine = [s for s in sets if s.slide is not None and slide_name(s.slide) == item.name]
    if not mine:
        raise DataError(f"{item.points}: its rows name several slides ({sorted({s.slide for s in sets})[:4]}), "
                        f"none of them {item.name}")
    return merge_point_sets(mine)


def _csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return buf.getvalue()


def _read_figures(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("x_px", "y_px", "x_um", "y_um", "p_atypical", "threshold"):
            row[key] = float(row[key])
        row["detector_score"] = float(row["detector_score"]) if row["detector_score"] else None
        row["figure"] = int(row["figure"])
        row["in_hotspot"] = row["in_hotspot"] == "True"
    return rows


def _reusable(folder: Path, key: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """A slide's stored row and figures when they were computed under ``key`` and are whole; ``None`` (compute
    again) for anything else: another key, a file missing, damaged or cut short."""
    try:
        stored = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
        if stored.get("version") != RESULTS_VERSION or stored.get("key") != key:
            return None
        if not all((folder / name).is_file() for name in ("figures.csv", stored.get("geojson", ""))):
            return None
        figures = _read_figures(folder / "figures.csv")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, csv.Error):
        return None
    if not isinstance(stored.get("row"), dict) or len(figures) != stored["row"].get("figures"):
        return None
    return stored, figures


def _own_outputs(out: Path | None) -> list[Path]:
    """What runs write into ``out`` (never points, even where ``out`` is the points folder or holds it)."""
    if out is None:
        return []
    tables = [out / name for name in ("cohort.csv", "cohort.json", "figures.csv")]
    shards = [*out.glob("cohort.shard-*-of-*.*"), *out.glob("figures.shard-*-of-*.*")] if out.is_dir() else []
    return [out / "slides", *tables, *shards]


def _failed_row(item: SlideInput, problem: str) -> dict[str, Any]:
    row: dict[str, Any] = {c: None for c in COHORT_COLUMNS}
    row.update(slide=item.name, status="failed", problem=problem, slide_path=str(item.slide),
               points_path=str(item.points) if item.points else None)
    return row


def analyse_slides(
    slides: Sequence[str | Path] | str | Path,
    points: str | Path,
    out: str | Path | None = None,
    *,
    model: Sequence[str | Path] | None = None,
    options: SlideOptions | None = None,
    shard: tuple[int, int] | None = None,
    resume: bool = True,
    report: bool = True,
    device: str = "auto",
    runtime: str = "auto",
    batch_size: int = 64,
    allow_unfinished: bool = False,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] | None = None,
) -> CohortResult:
    """Per slide: each figure's p(atypical) and class, the counts, atypical fraction (95 % Wilson interval),
    tissue area, figures per mm² and the hotspot; per cohort: the tables (and, with ``out``, every file of the
    module docstring). ``slides``: slide files, folders or ``.txt`` lists; ``points``: a points file or a folder
    of them paired by name (:mod:`mitotype.slides.pairing`); ``model``: model folders or fold ensembles (default:
    the shipped model). Slides that fail are in the result with their reason; nothing is raised for them.
    ``out=None`` computes in memory only (no resume)."""
    options = SlideOptions() if options is None else options
    if not isinstance(options, SlideOptions):
        raise DataError(f"options must be a mitotype.SlideOptions, got a {type(options).__name__}")
    if isinstance(model, str | os.PathLike):  # one model folder, as mitotype.load takes it
        model = [model]
    say = log or (lambda _message: None)
    inputs = [slides] if isinstance(slides, str | os.PathLike) else list(slides)
    if not inputs:
        raise DataError("slides: none given; name slide files, folders of slides or .txt lists of them")
    if not importable("skimage"):  # before any slide is read: every slide's tissue mask needs it
        raise MissingExtraError("the slides' tissue mask (scikit-image)", "wsi")
    out_dir = Path(out) if out is not None else None
    pairing = pair_points(find_slides(inputs), points, options.points_format, exclude=_own_outputs(out_dir))
    chosen = shard_slides(pairing.slides, shard)
    identity = {"version": RESULTS_VERSION, "mitotype": __version__, "model": model_identity(model),
                "options": options.identity(), "field": {"um": FIELD_UM, "target_mpp": TARGET_MPP}}
    loaded: list[Classifier] = []

    def classifier() -> Classifier:
        if not loaded:
            try:
                ready = load_classifier(model, tta=options.tta, threshold=options.threshold, device=device,
                                        runtime=runtime, batch_size=batch_size, allow_unfinished=allow_unfinished)
            except (MitotypeError, OSError) as exc:
                raise _ModelUnusable(exc) from None
            loaded.append(replace(ready, predict=_model_errors_end_the_run(ready.predict)))
            for note in loaded[0].notes:
                say(f"note: {note}")
        return loaded[0]

    bar = progress(len(chosen), "slides") if progress is not None and chosen else None
    results = []
    try:
        for item in chosen:
            results.append(_one_slide(item, options, identity, out_dir, resume, classifier, say))
            if bar is not None:
                bar.update(1)
    except _ModelUnusable as exc:
        raise exc.error from None
    finally:
        if bar is not None:
            bar.close()
    cohort = CohortResult(results, pairing.unpaired_points, shard=shard)
    ok = [s for s in results if s.ok and s.row.get("model")]
    cohort.model = ok[0].row["model"] if ok else (loaded[0].name if loaded else None)
    cohort.threshold = ok[0].row["threshold"] if ok else (loaded[0].threshold if loaded else None)
    if out_dir is not None:
        _write_cohort(cohort, out_dir, report and shard is None, options)
    return cohort


def _one_slide(item: SlideInput, options: SlideOptions, identity: dict[str, Any], out: Path | None, resume: bool,
               classifier: Callable[[], Classifier], say: Callable[[str], None]) -> SlideResult:
    folder = out / "slides" / item.name if out is not None else None
    try:
        if not item.slide.exists():
            raise DataError(f"{item.slide}: no such slide file")
        if item.problem:
            raise DataError(item.problem)
        point_set = _points_for(item, options.points_format)
        key = _digest({**identity, "slide": _slide_identity(item.slide), "points": point_set.digest()})
        reusable = _reusable(folder, key) if folder is not None and resume else None
        if reusable is not None:
            stored, figures = reusable
            return SlideResult(item.name, stored["row"], figures, reused=True, notes=stored.get("notes", []),
                               folder=folder)
        with open_slide(item.slide, options.backend) as slide:
            analysis = analyse_slide(item.name, slide, point_set, options, classifier)
    except (MitotypeError, OSError) as exc:
        message = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        say(f"failed: {item.name}: {message}")
        return SlideResult(item.name, _failed_row(item, message), None, folder=folder)
    for note in analysis.notes:
        say(f"note: {note}")
    if folder is not None:
        _write_slide(folder, item.name, analysis, key)
    return SlideResult(item.name, analysis.row, analysis.figures, notes=analysis.notes, folder=folder)


def _write_slide(folder: Path, name: str, analysis: Any, key: str) -> None:
    row = analysis.row
    atomic_write_text(folder / "figures.csv", _csv_text(analysis.figures, FIGURE_COLUMNS))
    hotspot = None
    if analysis.hotspot_px is not None:
        hotspot = hotspot_feature(analysis.hotspot_px, row["hotspot_figures"], row["hotspot_atypical"],
                                  row["hotspot_mm2"])
    geojson = f"{name}.geojson"
    write_slide_geojson(folder / geojson, analysis.figures, hotspot)
    write_thumbnail(folder / "thumbnail.jpg", analysis.thumbnail)
    write_slide_gallery(folder / "gallery.html", name, analysis.crops, analysis.figures, row["threshold"],
                        meta_lines=[f"model {row['model']}, threshold {row['threshold']}"] if row["model"] else [])
    write_json_atomic(folder / RESULT_FILE, {
        "version": RESULTS_VERSION, "key": key, "row": row, "notes": analysis.notes, "geojson": geojson,
        "hotspot_px": list(analysis.hotspot_px) if analysis.hotspot_px is not None else None,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def _write_cohort(cohort: CohortResult, out: Path, report: bool, options: SlideOptions) -> None:
    suffix = f".shard-{cohort.shard[0]}-of-{cohort.shard[1]}" if cohort.shard else ""
    rows = [s.row for s in cohort.slides]
    files = {"cohort_csv": out / f"cohort{suffix}.csv", "cohort_json": out / f"cohort{suffix}.json",
             "figures_csv": out / f"figures{suffix}.csv"}
    atomic_write_text(files["cohort_csv"], _csv_text(rows, COHORT_COLUMNS))
    figures = [f for s in cohort.slides for f in (s.figures or [])]
    atomic_write_text(files["figures_csv"], _csv_text(figures, FIGURE_COLUMNS))
    write_json_atomic(files["cohort_json"], {
        "slides": rows, "problems": cohort.problems, "model": cohort.model, "threshold": cohort.threshold,
        "options": options.identity(), "shard": list(cohort.shard) if cohort.shard else None,
        "mitotype": __version__})
    if report:
        files["report"] = out / "report.html"
        pages = [_page(s) for s in cohort.slides]
        meta = [f"{len(rows)} slides, {sum(1 for s in cohort.slides if s.ok)} analysed; model {cohort.model}, "
                f"threshold {cohort.threshold if cohort.threshold is None else round(cohort.threshold, 4)}"
                f"{', 8-view TTA' if options.tta else ''}; hotspot {options.hotspot_area_mm2:g} mm² (4:3 rectangle)"]
        write_cohort_page(files["report"], pages, "mitotype slides: atypical mitotic figures per slide", meta)
    cohort.files = files


def _page(result: SlideResult) -> SlidePage:
    if not result.ok or result.folder is None:
        return SlidePage(result.name, result.row)
    folder = result.folder
    stored = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
    thumbnail = (folder / "thumbnail.jpg").read_bytes() if (folder / "thumbnail.jpg").is_file() else None
    gallery = (folder / "gallery.html").read_text(encoding="utf-8") if (folder / "gallery.html").is_file() else None
    return SlidePage(result.name, result.row, result.figures or [], thumbnail, gallery, stored.get("hotspot_px"))

