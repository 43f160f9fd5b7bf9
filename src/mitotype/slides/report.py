"""The cohort's HTML page: per slide its numbers, its thumbnail with every figure marked (red atypical, blue
normal) and its hotspot outlined, and the gallery of its figures' crops.

Each slide's gallery is the one ``predict --report`` writes (:mod:`mitotype.evaluation.gallery`: sorted by
p(atypical), threshold marked, figures nearest it shown apart), written once per slide beside its results and
embedded in the cohort page in a lazily loaded frame, so the page is one self-contained file and is rebuilt
from the stored per-slide files when a cohort is resumed.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mitotype.evaluation.gallery import write_gallery
from mitotype.ioutils import atomic_write_bytes, atomic_write_text

REPORT_THUMBNAIL_SIDE = 960
MARK = {"atypical": "#c0392b", "normal": "#2c7fb8"}
HOTSPOT_COLOUR = "#f1c40f"


def write_thumbnail(path: Path, thumbnail: np.ndarray, max_side: int = REPORT_THUMBNAIL_SIDE) -> Path:
    """The slide's thumbnail as a JPEG of at most ``max_side`` px (what the report shows)."""
    image = Image.fromarray(np.ascontiguousarray(thumbnail[..., :3]))
    image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=82, optimize=True)
    return atomic_write_bytes(path, buf.getvalue())


def write_slide_gallery(path: Path, name: str, crops: np.ndarray, figures: Sequence[dict[str, Any]],
                        threshold: float | None, meta_lines: Sequence[str] = ()) -> Path:
    """The gallery of one slide's figures (ids name the figure and where it lies)."""
    ids = [f"{name} #{f['figure']} (x {f['x_px']:.0f}, y {f['y_px']:.0f} px)" for f in figures]
    p = np.array([f["p_atypical"] for f in figures], dtype=np.float64)
    return write_gallery(path, crops, p, 0.5 if threshold is None else threshold, ids,
                         title=f"{name}: {len(figures)} mitotic figures", meta_lines=meta_lines)


@dataclass
class SlidePage:
    """What the cohort page shows of one slide (read back from its stored files)."""

    name: str
    row: dict[str, Any]
    figures: Sequence[dict[str, Any]] = ()
    thumbnail: bytes | None = None
    """The JPEG of :func:`write_thumbnail`."""
    gallery: str | None = None
    """The slide's gallery page (HTML)."""
    hotspot_px: Sequence[float] | None = None


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _fraction(row: dict[str, Any]) -> str:
    if row.get("atypical_fraction") is None:
        return ""
    return (f"{row['atypical_fraction']:.3f} ({row['atypical_fraction_ci_low']:.3f}-"
            f"{row['atypical_fraction_ci_high']:.3f})")


def _svg(page: SlidePage) -> str:
    if page.thumbnail is None:
        return ""
    with Image.open(io.BytesIO(page.thumbnail)) as image:
        tw, th = image.size
    sx, sy = tw / float(page.row["width_px"]), th / float(page.row["height_px"])
    data = base64.b64encode(page.thumbnail).decode("ascii")
    parts = [f'<svg class="slide" viewBox="0 0 {tw} {th}" width="{tw}" height="{th}" role="img" '
             f'aria-label="{html.escape(page.name)} with its figures">',
             f'<image href="data:image/jpeg;base64,{data}" x="0" y="0" width="{tw}" height="{th}"/>']
    if page.hotspot_px:
        x0, y0, x1, y1 = page.hotspot_px
        parts.append(f'<rect class="hotspot" x="{x0 * sx:.1f}" y="{y0 * sy:.1f}" width="{(x1 - x0) * sx:.1f}" '
                     f'height="{(y1 - y0) * sy:.1f}" fill="none" stroke="{HOTSPOT_COLOUR}" stroke-width="2.5"/>')
    for f in page.figures:
        colour = MARK.get(str(f["class"]), "#555")
        tip = f'#{f["figure"]} p={float(f["p_atypical"]):.3f}'
        parts.append(f'<circle cx="{float(f["x_px"]) * sx:.1f}" cy="{float(f["y_px"]) * sy:.1f}" r="3.5" '
                     f'fill="none" stroke="{colour}" stroke-width="1.6"><title>{tip}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.2em;color:#222;background:#fafafa}
h1{font-size:1.35em}h2{font-size:1.1em;margin:1.6em 0 .4em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:.2em .45em;text-align:right}
td:first-child,th:first-child{text-align:left}.failed td{background:#fdecea}.meta{color:#555;font-size:.9em}
svg.slide{max-width:100%;height:auto;border:1px solid #ccc;background:#fff}
iframe{width:100%;height:640px;border:1px solid #ccc;background:#fff}
.key span{margin-right:1.2em}.sw{display:inline-block;width:.8em;height:.8em;border:2px solid;border-radius:50%;
 vertical-align:middle;margin-right:.3em}
"""

TABLE_COLUMNS = (("slide", "slide"), ("status", "status"), ("figures", "figures"), ("atypical", "atypical"),
                 ("normal", "normal"), ("atypical fraction (95% CI)", None), ("hotspot figures", "hotspot_figures"),
                 ("hotspot atypical", "hotspot_atypical"), ("hotspot fraction", "hotspot_atypical_fraction"),
                 ("tissue mm²", "tissue_mm2"), ("figures/mm²", "figures_per_mm2"),
                 ("points outside", "points_outside"), ("problem", "problem"))


def render_cohort_page(pages: Sequence[SlidePage], title: str, meta_lines: Sequence[str] = ()) -> str:
    """The cohort page as one HTML string."""
    head = "".join(f"<th>{html.escape(label)}</th>" for label, _ in TABLE_COLUMNS)
    rows = []
    for page in pages:
        cells = []
        for _label, key in TABLE_COLUMNS:
            if key is None:
                cells.append(f"<td>{_fraction(page.row)}</td>")
            elif key == "slide":
                cells.append(f'<td><a href="#slide-{html.escape(page.name)}">{html.escape(page.name)}</a></td>')
            else:
                cells.append(f"<td>{_fmt(page.row.get(key))}</td>")
        css = ' class="failed"' if page.row.get("status") != "ok" else ""
        rows.append(f"<tr{css}>{''.join(cells)}</tr>")
    body = [f"<h1>{html.escape(title)}</h1>", *(f'<p class="meta">{html.escape(m)}</p>' for m in meta_lines),
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>",
            '<p class="key"><span><i class="sw" style="border-color:#c0392b"></i>atypical</span>'
            '<span><i class="sw" style="border-color:#2c7fb8"></i>normal</span>'
            f'<span><i class="sw" style="border-color:{HOTSPOT_COLOUR};border-radius:0"></i>hotspot</span></p>']
    for page in pages:
        row = page.row
        body.append(f'<section id="slide-{html.escape(page.name)}"><h2>{html.escape(page.name)}</h2>')
        if row.get("status") != "ok":
            body.append(f'<p class="meta">failed: {html.escape(str(row.get("problem") or ""))}</p></section>')
            continue
        body.append(f'<p class="meta">{row["figures"]} mitotic figures: {row["atypical"]} atypical, {row["normal"]} '
                    f'normal{", fraction " + _fraction(row) if row.get("atypical_fraction") is not None else ""}; '
                    f'hotspot ({_fmt(row.get("hotspot_mm2"), 2)} mm²): {row["hotspot_figures"]} figures, '
                    f'{row["hotspot_atypical"]} atypical; tissue {_fmt(row.get("tissue_mm2"), 2)} mm²</p>')
        body.append(_svg(page))
        if page.gallery and row.get("figures"):
            body.append(f"<details><summary>the crops of its {row['figures']} figures, by p(atypical)</summary>"
                        f'<iframe loading="lazy" title="figures of {html.escape(page.name)}" '
                        f'srcdoc="{html.escape(page.gallery, quote=True)}"></iframe></details>')
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")


def write_cohort_page(path: Path, pages: Sequence[SlidePage], title: str, meta_lines: Sequence[str] = ()) -> Path:
    return atomic_write_text(path, render_cohort_page(pages, title, meta_lines))
