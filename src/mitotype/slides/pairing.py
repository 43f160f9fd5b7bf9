"""Which slides to analyse, and which points file belongs to each: paired by name.

Slides: files, folders (searched at any depth for slide files) and ``.txt`` lists (one path per line, relative
to the list; ``#`` comments). A slide's *name* is its file name without the suffixes (``A12.ome.tif`` -> ``A12``);
two slides of one name are refused, since their results would share a name.

Points: one file for one slide; one CSV naming each row's slide (an ``image``/``slide`` column) for a whole
cohort; or a folder whose files are paired with slides by name: ``NAME.json``, ``NAME.geojson``, ``NAME.csv``,
``NAME_anything.json`` (also ``NAME.anything`` and ``NAME-anything``), or any points file inside a folder
called ``NAME`` (a Track 1 container's ``NAME/mitotic-figures.json``). The longest matching slide name wins, so
``A1`` and ``A10`` keep their own files. A slide without a points file, a slide with several, and a points file
without a slide are each named in one line; the other slides go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mitotype.data.patches import TIFF_SUFFIXES, WSI_SUFFIXES
from mitotype.errors import DataError
from mitotype.slides.points import POINT_SUFFIXES, PointSet, read_point_file

SLIDE_SUFFIXES = WSI_SUFFIXES | TIFF_SUFFIXES | frozenset({".btf", ".qptiff"})
"""What a folder of slides is searched for (a slide named on the command line may have any suffix)."""
LIST_SUFFIXES = (".txt", ".lst")
INNER_SUFFIXES = (".ome",)
SEPARATORS = "._-"


def slide_name(path: str | Path) -> str:
    """``A12.ome.tif`` -> ``A12``: the name results and points files are known by."""
    name = Path(path).name
    stem = name[: -len(Path(name).suffix)] if Path(name).suffix else name
    for inner in INNER_SUFFIXES:
        if stem.lower().endswith(inner):
            stem = stem[: -len(inner)]
    return stem


def _listed(path: Path) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text list of slide paths (not UTF-8 text)") from None
    found = [path.parent / line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not found:
        raise DataError(f"{path}: lists no slide paths (one path per line expected)")
    return found


def find_slides(inputs: Sequence[str | Path]) -> list[Path]:
    """Every slide the inputs name, sorted by name; a missing input or two slides of one name is an error.
    A path listed in a ``.txt`` file that does not exist is kept: it fails as that slide, alone."""
    slides: list[Path] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                           and (p.suffix.lower() in SLIDE_SUFFIXES or p.name.lower().endswith(".ome.tif")))
            if not found:
                raise DataError(f"{path}: no slide files found (looked for {sorted(SLIDE_SUFFIXES)} at any depth)")
            slides += found
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            slides += _listed(path)
        elif path.is_file():
            slides.append(path)
        else:
            raise DataError(f"{path}: no such slide, folder or list")
    unique: dict[Path, Path] = {}
    for path in slides:
        unique.setdefault(path.resolve(), path)
    by_name: dict[str, Path] = {}
    for path in unique.values():
        other = by_name.setdefault(slide_name(path), path)
        if other is not path:
            raise DataError(f"two slides are named {slide_name(path)!r} ({other} and {path}): results are kept by "
                            "name, so rename one")
    return [by_name[name] for name in sorted(by_name)]


@dataclass
class SlideInput:
    """One slide and where its points come from (or why none could be found)."""

    name: str
    slide: Path
    points: Path | None = None
    point_set: PointSet | None = None
    """Already read (a cohort CSV split by slide)."""
    problem: str | None = None


@dataclass
class Pairing:
    slides: list[SlideInput]
    unpaired_points: list[str] = field(default_factory=list)
    """One line per points file (or CSV slide name) that matches no slide."""


def _owner(path: Path, root: Path, names: list[str]) -> str | None:
    """The slide a points file in folder ``root`` belongs to, by its name or its folder's, else ``None``."""
    for part in reversed(path.relative_to(root).parts[:-1]):  # inside a folder named like a slide
        if part in names:
            return part
    stem = path.name[: -len(path.suffix)]
    matches = [n for n in names if stem == n or (stem.startswith(n) and stem[len(n)] in SEPARATORS)]
    return max(matches, key=len) if matches else None


def merge_point_sets(sets: Sequence[PointSet]) -> PointSet:
    """One slide's points given under several spellings of its name (a cohort CSV whose slide column says
    ``A1`` in some rows and ``A1.svs`` or a path in others): every row counts, in the file's order per spelling."""
    first = sets[0]
    if len(sets) == 1:
        return first
    return PointSet(first.source, first.fmt, np.concatenate([s.x for s in sets]), np.concatenate([s.y for s in sets]),
                    np.concatenate([s.score for s in sets]), [n for s in sets for n in s.names], first.units,
                    slide=first.slide, skipped=sum(s.skipped for s in sets), notes=[n for s in sets for n in s.notes])


def pair_points(slides: Sequence[Path], points: str | Path, fmt: str = "auto", exclude: Sequence[Path] = ()
                ) -> Pairing:
    """Pair ``slides`` with the points under ``points`` (a file or a folder); see the module docstring.
    ``exclude``: files and folders that are never points (what a run wrote into its output folder, which may
    be the points folder itself or lie inside it)."""
    points = Path(points)
    names = [slide_name(s) for s in slides]
    items = [SlideInput(n, s) for n, s in zip(names, slides)]
    if points.is_dir():
        skip = [path.resolve() for path in exclude]
        files = sorted(p for p in points.rglob("*") if p.is_file() and p.suffix.lower() in POINT_SUFFIXES
                       and not p.name.startswith(".") and not any(p.resolve().is_relative_to(s) for s in skip))
        owned: dict[str, list[Path]] = {}
        unpaired = []
        for file in files:
            owner = _owner(file, points, names)
            if owner is None:
                unpaired.append(f"{file}: a points file without a slide (no slide is named "
                                f"{file.name[: -len(file.suffix)]!r} or like its folder)")
            else:
                owned.setdefault(owner, []).append(file)
        for item in items:
            found = owned.get(item.name, [])
            if len(found) == 1:
                item.points = found[0]
            elif found:
                item.problem = f"several points files for slide {item.name}: {', '.join(str(f) for f in found)}"
            else:
                item.problem = (f"no points file for slide {item.name} in {points} (looked for {item.name}.json, "
                                f".geojson, .csv, {item.name}_*.* and {item.name}/*)")
        return Pairing(items, unpaired)
    if not points.is_file():
        raise DataError(f"{points}: no such points file or folder")
    sets = read_point_file(points, fmt)
    if len(sets) == 1 and sets[0].slide is None:
        if len(items) > 1:
            raise DataError(f"{points}: one points file for {len(items)} slides; give a folder of files named like "
                            "the slides, or a CSV with a slide column naming each row's slide")
        items[0].points, items[0].point_set = points, sets[0]
        return Pairing(items)
    by_name = {item.name: item for item in items}
    unpaired = []
    found: dict[str, list[PointSet]] = {}
    for point_set in sets:
        name = slide_name(point_set.slide) if point_set.slide else ""
        item = by_name.get(name) or by_name.get(point_set.slide or "")
        if item is None:
            unpaired.append(f"{points}: {len(point_set)} point(s) on slide {point_set.slide!r}, which is not among "
                            "the slides given")
            continue
        found.setdefault(item.name, []).append(point_set)
    for name, own in found.items():
        by_name[name].points, by_name[name].point_set = points, merge_point_sets(own)
    for item in items:
        if item.point_set is None:
            item.problem = f"no points for slide {item.name} in {points} (its slide column never names it)"
    return Pairing(items, unpaired)
