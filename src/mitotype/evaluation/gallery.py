"""A self-contained HTML gallery of figures: what a pathologist checks before trusting a number.

Every figure appears as a thumbnail with its p(atypical) and decision, sorted by p, with the threshold
marked. With labels (``evaluate``), the errors come first, per domain: false positives (normal figures
called atypical) and false negatives (atypical figures missed), then the figures nearest the threshold,
where a different threshold would change the call. Expert votes are shown where they are known.

It stays usable at 10,000 figures: thumbnails are packed once into a few JPEG sprite sheets embedded as
data URIs (one decode per sheet, not per figure), and tiles are built in chunks as they scroll into view
(``IntersectionObserver``), so opening the file costs the first screen, not the whole set. One file, no
server, no external assets: it can be mailed or opened on an offline cluster node.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mitotype.ioutils import atomic_write_text

__all__ = ["GALLERY_SECTIONS", "GalleryData", "build_gallery_data", "render_gallery", "write_gallery"]

GALLERY_SECTIONS = ("summary", "errors", "near-threshold", "all")
"""``id`` prefixes of the gallery's sections, in order (``errors`` only when labels are known)."""

SHEET_TILES = 16
"""A sprite sheet is SHEET_TILES x SHEET_TILES thumbnails."""


@dataclass
class GalleryData:
    """What the page shows: one row per figure plus the sections as lists of row indices."""

    rows: list[dict[str, Any]]
    sections: list[dict[str, Any]]
    sheets: list[str]
    thumb_size: int
    threshold: float | None
    """The common threshold, or ``None`` when figures carry different ones (e.g. fold models)."""


def _thumbnails(images: np.ndarray, size: int) -> list[str]:
    """Pack every image, resized to ``size`` px, into JPEG sprite sheets (base64), row-major."""
    per_sheet = SHEET_TILES * SHEET_TILES
    sheets = []
    for start in range(0, len(images), per_sheet):
        chunk = images[start : start + per_sheet]
        rows = (len(chunk) + SHEET_TILES - 1) // SHEET_TILES
        sheet = Image.new("RGB", (SHEET_TILES * size, rows * size), (255, 255, 255))
        for k, image in enumerate(chunk):
            thumb = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).convert("RGB")
            thumb = thumb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
            sheet.paste(thumb, ((k % SHEET_TILES) * size, (k // SHEET_TILES) * size))
        buf = io.BytesIO()
        sheet.save(buf, format="JPEG", quality=82, optimize=True)
        sheets.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    return sheets


def _opt_list(values: Sequence[Any] | np.ndarray | None, n: int, name: str) -> list[Any]:
    if values is None:
        return [None] * n
    out = list(values)
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} values for {n} figures")
    return out


def build_gallery_data(
    images: np.ndarray,
    p_atypical: Sequence[float] | np.ndarray,
    threshold: float | Sequence[float] | np.ndarray,
    ids: Sequence[str],
    *,
    labels: Sequence[int | None] | np.ndarray | None = None,
    domains: Sequence[str | None] | None = None,
    votes: Sequence[str | None] | None = None,
    thumb_size: int = 80,
    n_near: int = 48,
) -> GalleryData:
    """Rows, sections and sprite sheets for :func:`render_gallery` (no HTML yet, so it can be tested)."""
    p = np.asarray(p_atypical, dtype=np.float64).reshape(-1)
    n = len(p)
    if len(images) != n or len(ids) != n:
        raise ValueError(f"{len(images)} images, {len(ids)} ids and {n} probabilities: they must match")
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (n,)).copy()
    common = float(thr[0]) if n and np.all(thr == thr[0]) else None
    label_list = _opt_list(labels, n, "labels")
    domain_list = _opt_list(domains, n, "domains")
    vote_list = _opt_list(votes, n, "votes")
    decisions = p >= thr
    rows = []
    for i in range(n):
        label = label_list[i]
        rows.append({
            "id": str(ids[i]),
            "p": round(float(p[i]), 4),
            "t": round(float(thr[i]), 4),
            "d": int(decisions[i]),
            "y": None if label is None or label == "" else int(label),
            "dom": None if domain_list[i] is None else str(domain_list[i]),
            "v": None if vote_list[i] in (None, "") else str(vote_list[i]),
        })
    by_p = sorted(range(n), key=lambda i: (-p[i], i))
    sections: list[dict[str, Any]] = []
    known = [i for i in range(n) if rows[i]["y"] is not None]
    if known:
        for dom in sorted({rows[i]["dom"] or "" for i in known}):
            in_dom = [i for i in known if (rows[i]["dom"] or "") == dom]
            fp = sorted((i for i in in_dom if rows[i]["d"] == 1 and rows[i]["y"] == 0), key=lambda i: (-p[i], i))
            fn = sorted((i for i in in_dom if rows[i]["d"] == 0 and rows[i]["y"] == 1), key=lambda i: (p[i], i))
            where = f" in {dom}" if dom else ""
            sections.append({"id": f"errors-{len(sections)}", "kind": "errors",
                             "title": f"False positives{where}: normal figures called atypical ({len(fp)})",
                             "items": fp})
            sections.append({"id": f"errors-{len(sections)}", "kind": "errors",
                             "title": f"False negatives{where}: atypical figures missed ({len(fn)})",
                             "items": fn})
    near = sorted(range(n), key=lambda i: (abs(p[i] - thr[i]), i))[: max(0, n_near)]
    sections.append({"id": "near-threshold", "kind": "near",
                     "title": f"The {len(near)} figures nearest the threshold (a small change of threshold "
                              "would change their call)",
                     "items": sorted(near, key=lambda i: (-p[i], i))})
    sections.append({"id": "all", "kind": "all", "title": f"All {n} figures by p(atypical), highest first",
                     "items": by_p})
    return GalleryData(rows=rows, sections=sections, sheets=_thumbnails(images, thumb_size),
                       thumb_size=thumb_size, threshold=common)


def _histogram_svg(data: GalleryData, bins: int = 40) -> str:
    """p(atypical) histogram (stacked by label where known, else by decision) with the threshold line."""
    p = np.array([r["p"] for r in data.rows], dtype=np.float64)
    known = bool(data.rows) and all(r["y"] is not None for r in data.rows)
    group = np.array([r["y"] if known else r["d"] for r in data.rows], dtype=np.int64)
    ids = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    counts = np.stack([np.bincount(ids[group == g], minlength=bins) for g in (0, 1)])
    w, h, pad = 640, 160, 24
    top = max(1, int(counts.sum(axis=0).max()))
    bar = (w - 2 * pad) / bins
    parts = [f'<svg viewBox="0 0 {w} {h + 2 * pad}" width="{w}" height="{h + 2 * pad}" role="img" '
             f'aria-label="histogram of p(atypical)">']
    colours = ("#2c7fb8", "#c0392b")
    for b in range(bins):
        y0 = h + pad
        for g in (0, 1):
            hh = counts[g, b] / top * h
            if hh > 0:
                parts.append(f'<rect x="{pad + b * bar:.1f}" y="{y0 - hh:.1f}" width="{bar - 1:.1f}" '
                             f'height="{hh:.1f}" fill="{colours[g]}"/>')
            y0 -= hh
    parts.append(f'<line x1="{pad}" y1="{h + pad}" x2="{w - pad}" y2="{h + pad}" stroke="#333"/>')
    for x in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{pad + x * (w - 2 * pad):.1f}" y="{h + pad + 16}" font-size="11" '
                     f'text-anchor="middle">{x:g}</text>')
    thresholds = sorted({r["t"] for r in data.rows}) if data.rows else []
    for t in thresholds[:20]:
        x = pad + t * (w - 2 * pad)
        parts.append(f'<line class="threshold" x1="{x:.1f}" y1="{pad / 2}" x2="{x:.1f}" y2="{h + pad}" '
                     'stroke="#111" stroke-dasharray="4 3"/>')
    if data.threshold is not None:
        x = pad + data.threshold * (w - 2 * pad)
        parts.append(f'<text x="{x + 4:.1f}" y="{pad}" font-size="11">threshold {data.threshold:.3f}</text>')
    legend = ("NMF (label)", "AMF (label)") if known else ("called normal", "called atypical")
    for g in (0, 1):
        parts.append(f'<rect x="{w - 170}" y="{8 + 14 * g}" width="10" height="10" fill="{colours[g]}"/>'
                     f'<text x="{w - 155}" y="{17 + 14 * g}" font-size="11">{legend[g]}</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.2em;color:#222;background:#fafafa}
h1{font-size:1.35em;margin:.2em 0}h2{font-size:1.05em;margin:1.4em 0 .4em;border-bottom:1px solid #ccc}
.meta{color:#555;font-size:.9em;margin:.15em 0}
.grid{display:flex;flex-wrap:wrap;gap:6px}
.tile{width:calc(var(--s) + 8px);background:#fff;border:3px solid #2c7fb8;border-radius:4px;font-size:11px;
 line-height:1.25;padding:1px;box-sizing:content-box}
.tile.atyp{border-color:#c0392b}.tile.wrong{box-shadow:0 0 0 2px #f1c40f}
.thumb{width:var(--s);height:var(--s);margin:0 auto;transition:transform .1s;transform-origin:center}
.thumb:hover{transform:scale(2.2);position:relative;z-index:5;box-shadow:0 0 6px #000}
.cap{text-align:center;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.divider{width:100%;border-top:2px dashed #111;margin:4px 0;font-size:12px;font-weight:600;padding-top:2px}
.empty{color:#777;font-style:italic}.sentinel{width:100%;height:1px}
.key span{display:inline-block;margin-right:1em}.sw{display:inline-block;width:.9em;height:.9em;
 vertical-align:middle;margin-right:.3em;border:3px solid}
"""

_JS = """
(function(){
const D=JSON.parse(document.getElementById('gallery-data').textContent);
const S=D.thumb, T=D.tiles, CHUNK=160, done=new Set();
document.documentElement.style.setProperty('--s', S+'px');
const style=document.createElement('style');document.head.appendChild(style);
function sheet(k){ if(!done.has(k)){ done.add(k);
  style.sheet.insertRule('.s'+k+'{background-image:url(data:image/jpeg;base64,'+D.sheets[k]+')}', 0);} }
function tile(i){
  const r=D.rows[i], k=Math.floor(i/(T*T)), j=i%(T*T);
  sheet(k);
  const el=document.createElement('div');
  el.className='tile'+(r.d?' atyp':'')+(r.y!==null&&r.y!==r.d?' wrong':'');
  const th=document.createElement('div'); th.className='thumb s'+k;
  th.style.backgroundPosition=(-(j%T)*S)+'px '+(-Math.floor(j/T)*S)+'px';
  el.appendChild(th);
  const cap=document.createElement('div'); cap.className='cap';
  let txt=r.p.toFixed(3)+(r.d?' AMF':' NMF');
  if(r.y!==null) txt+=(r.y===r.d?' \\u2713':' \\u2717');
  cap.textContent=txt; el.appendChild(cap);
  if(r.v!==null){const v=document.createElement('div');v.className='cap';v.textContent='votes '+r.v;el.appendChild(v);}
  el.title=r.id+(r.dom?'\\ndomain: '+r.dom:'')+'\\np(atypical) '+r.p+'  threshold '+r.t+
    '\\ncalled '+(r.d?'atypical':'normal')+(r.y!==null?'\\nlabel '+(r.y?'atypical':'normal'):'')+
    (r.v!==null?'\\nexpert votes for atypical: '+r.v:'');
  return el;
}
function fill(sec){
  const grid=document.getElementById('grid-'+sec.id); let pos=0, marked=false;
  if(!sec.items.length){grid.innerHTML='<div class="empty">none</div>';return;}
  const sentinel=document.createElement('div'); sentinel.className='sentinel';
  function more(){
    const end=Math.min(pos+CHUNK, sec.items.length), frag=document.createDocumentFragment();
    for(;pos<end;pos++){
      const i=sec.items[pos];
      if(sec.kind==='all' && !marked && D.rows[i].d===0){
        marked=true; const dv=document.createElement('div'); dv.className='divider';
        dv.textContent=D.threshold!==null ? 'threshold '+D.threshold.toFixed(3)+': called atypical above, normal below'
          : 'figures below are called normal (thresholds differ per model)';
        frag.appendChild(dv);
      }
      frag.appendChild(tile(i));
    }
    grid.insertBefore(frag, sentinel);
    if(pos>=sec.items.length){obs.unobserve(sentinel); sentinel.remove();}
  }
  grid.appendChild(sentinel);
  const obs=new IntersectionObserver(es=>{ if(es.some(e=>e.isIntersecting)) more(); }, {rootMargin:'800px'});
  obs.observe(sentinel);
}
D.sections.forEach(fill);
document.body.dataset.ready='1';
})();
"""


def render_gallery(data: GalleryData, title: str, meta_lines: Sequence[str] = ()) -> str:
    """The gallery page as one HTML string (see the module docstring for its layout)."""
    n = len(data.rows)
    n_atyp = sum(r["d"] for r in data.rows)
    known = [r for r in data.rows if r["y"] is not None]
    lines = [f"{n} figures: {n_atyp} called atypical, {n - n_atyp} called normal"]
    if data.threshold is not None:
        lines.append(f"threshold {data.threshold:.3f}: atypical when p(atypical) &ge; threshold")
    else:
        lines.append("thresholds differ per figure (each model's own); each tile's tooltip shows its threshold")
    if known:
        wrong = sum(r["y"] != r["d"] for r in known)
        lines.append(f"{len(known)} figures with labels: {wrong} wrong (yellow ring)")
    meta = "".join(f'<p class="meta">{html.escape(m)}</p>' for m in meta_lines)
    summary = "".join(f'<p class="meta">{m}</p>' for m in lines)
    key = ('<p class="key"><span><i class="sw" style="border-color:#c0392b"></i>called atypical</span>'
           '<span><i class="sw" style="border-color:#2c7fb8"></i>called normal</span>'
           '<span><i class="sw" style="border-color:#f1c40f"></i>wrong, where the label is known</span>'
           '<span>hover a figure to enlarge it; its tooltip names it</span></p>')
    body = [f'<section id="summary"><h1>{html.escape(title)}</h1>{meta}{summary}{key}'
            f"{_histogram_svg(data)}</section>"]
    for sec in data.sections:
        body.append(f'<section id="{sec["id"]}" data-kind="{sec["kind"]}" data-count="{len(sec["items"])}">'
                    f'<h2>{html.escape(sec["title"])}</h2><div class="grid" id="grid-{sec["id"]}"></div></section>')
    payload = {"rows": data.rows, "sections": [{k: s[k] for k in ("id", "kind", "items")} for s in data.sections],
               "sheets": data.sheets, "thumb": data.thumb_size, "tiles": SHEET_TILES, "threshold": data.threshold}
    blob = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            + "".join(body)
            + f'<script type="application/json" id="gallery-data">{blob}</script><script>{_JS}</script>'
            "</body></html>\n")


def write_gallery(
    path: str | Path,
    images: np.ndarray,
    p_atypical: Sequence[float] | np.ndarray,
    threshold: float | Sequence[float] | np.ndarray,
    ids: Sequence[str],
    *,
    title: str = "mitotype gallery",
    meta_lines: Sequence[str] = (),
    labels: Sequence[int | None] | np.ndarray | None = None,
    domains: Sequence[str | None] | None = None,
    votes: Sequence[str | None] | None = None,
    thumb_size: int = 80,
) -> Path:
    """Write the gallery atomically to ``path`` and return it."""
    data = build_gallery_data(images, p_atypical, threshold, ids, labels=labels, domains=domains,
                              votes=votes, thumb_size=thumb_size)
    return atomic_write_text(Path(path), render_gallery(data, title, meta_lines))
