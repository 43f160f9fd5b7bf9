"""A self-contained HTML evaluation report and the per-figure predictions CSV.

The report is one file (plots embedded as base64 PNG, no scripts, no external assets) so it can be
mailed, archived next to a run, or opened on an offline cluster node. Plots are drawn with the Agg
renderer through :class:`matplotlib.figure.Figure`, never through pyplot's global state.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mitotype.data.labels import ATYPICAL, BOOL_WORDS, CLASS_NAMES, CLASS_WORDS, NORMAL, parse_label
from mitotype.evaluation.calibration import calibration_by_domain
from mitotype.evaluation.metrics import format_mean_std
from mitotype.evaluation.predictions import PREDICTION_COLUMNS
from mitotype.extras import importable
from mitotype.ioutils import atomic_write_text

__all__ = [
    "N_FIGURES",
    "PLOTS_MISSING",
    "PREDICTION_COLUMNS",
    "plots_available",
    "read_predictions_csv",
    "write_ablation_report",
    "write_predictions_csv",
    "write_report",
]

N_FIGURES = 5
"""Embedded images in every report: per-domain balanced accuracy, ROC, confusion matrices,
reliability diagram, scores by atypical votes."""

PLOT_MODULES = ("matplotlib", "sklearn")
"""What the plots are drawn with: the training extra brings both; the base install (ONNX inference) has
neither, and its report holds the tables without the plots (:func:`plots_available`)."""
PLOTS_MISSING = ("the plots need matplotlib and scikit-learn, which the base install leaves out: "
                 "pip install 'mitotype[report]'")

SECTIONS = ("summary", "balanced-accuracy", "roc", "confusion", "reliability", "votes", "configuration")
"""``id`` attributes of the report's sections, in order."""


# --------------------------------------------------------------------------------------------- rows
_LABEL_TEXT = CLASS_WORDS | BOOL_WORDS
"""A label in a prediction file: a class name (normal/NMF, atypical/AMF), true/false, or a number."""


def _as_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        label = parse_label(value, _LABEL_TEXT)
        return label if label is not None else int(float(value.strip()))
    return int(value)


def _int_column(rows: list[Mapping[str, Any]], key: str) -> np.ndarray:
    """Integer column with -1 for missing/empty values."""
    values = [_as_int(r.get(key)) for r in rows]
    return np.asarray([-1 if v is None else v for v in values], dtype=np.int64)


def _parse_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    rows = list(rows)
    if not rows:
        raise ValueError("no prediction rows: nothing to report")
    missing = [k for k in ("p_atypical", "label", "domain") if k not in rows[0]]
    if missing:
        raise ValueError(f"prediction rows lack key(s) {missing}; expected {list(PREDICTION_COLUMNS)}")
    p = np.asarray([float(r["p_atypical"]) for r in rows], dtype=np.float64)
    if not np.isfinite(p).all():
        raise ValueError("prediction rows contain non-finite p_atypical values")
    thr = [r.get("threshold") for r in rows]
    votes = _int_column(rows, "votes_atypical")
    cast = _int_column(rows, "votes_cast")
    return {
        "p": p,
        "label": _int_column(rows, "label"),
        "decision": _int_column(rows, "decision"),
        "threshold": np.asarray([np.nan if t in (None, "") else float(t) for t in thr], dtype=np.float64),
        "votes": np.where(cast == 0, -1, votes),  # no vote cast: unknown, not "0 atypical votes"
        "domain": np.asarray([str(r["domain"]) for r in rows], dtype=object),
    }


def write_predictions_csv(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write prediction rows (keys :data:`PREDICTION_COLUMNS`, extras after them) atomically."""
    rows = list(rows)
    extras = sorted({k for r in rows for k in r} - set(PREDICTION_COLUMNS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*PREDICTION_COLUMNS, *extras], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in writer.fieldnames})
    return atomic_write_text(path, buf.getvalue())


def read_predictions_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows written by :func:`write_predictions_csv`, with numbers parsed back (empty -> ``None``)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for r in rows:
        row: dict[str, Any] = dict(r)
        row["p_atypical"] = float(r["p_atypical"])
        for key in ("decision", "label", "votes_atypical", "votes_cast"):
            if key in r:
                row[key] = _as_int(r[key])
        out.append(row)
    return out


# -------------------------------------------------------------------------------------------- plots
def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(fig.get_label() or "plot")}" src="data:image/png;base64,{data}">'


def _figure(label: str, width: float, height: float) -> Any:
    # start-up time: matplotlib and scikit-learn's plots load only when a report is drawn
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    fig.set_label(label)
    return fig


def _ci(entry: Mapping[str, Any], metric: str) -> tuple[float, float] | None:
    ci = (entry.get("ci") or {}).get(metric)
    return None if ci is None else (float(ci[0]), float(ci[1]))


def _pooled(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Pooled metrics with their interval (``pooled["ci"]`` or, as ``cv`` stores it, ``pooled_ci``)."""
    pooled = dict(summary.get("pooled") or {})
    if "ci" not in pooled and summary.get("pooled_ci"):
        pooled["ci"] = summary["pooled_ci"]
    return pooled


def _plot_balanced_accuracy(results: Mapping[str, Any]) -> str:
    domains = results.get("per_domain", {})
    names = [*domains, "pooled"]
    entries = [*domains.values(), _pooled(results)]
    fig = _figure("balanced accuracy per domain", max(4.0, 1.0 + 0.9 * len(names)), 3.6)
    ax = fig.add_subplot()
    for i, (name, entry) in enumerate(zip(names, entries)):
        ba = entry.get("balanced_accuracy")
        if ba is None:
            ax.text(i, 0.02, "n/a", ha="center", va="bottom", fontsize=8)
            continue
        ci = _ci(entry, "balanced_accuracy")
        yerr = None if ci is None else [[max(0.0, ba - ci[0])], [max(0.0, ci[1] - ba)]]
        color = "0.35" if name == "pooled" else "tab:blue"
        ax.bar(i, ba, color=color, yerr=yerr, capsize=4)
    mean = results.get("domain_mean")
    title = "Balanced accuracy per domain (95% bootstrap interval)"
    if mean is not None:
        ax.axhline(mean, color="tab:red", linestyle="--", linewidth=1)
        title += f"\nred dashed: mean over domains {format_mean_std(mean, results.get('domain_std'))}"
    ax.axhline(0.5, color="0.6", linewidth=0.8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("balanced accuracy")
    ax.set_title(title, fontsize=10)
    return _png(fig)


def _plot_roc(data: Mapping[str, np.ndarray]) -> str:
    # start-up time: matplotlib and scikit-learn's plots load only when a report is drawn
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = _figure("ROC curves", 4.8, 4.4)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.7", linewidth=0.8)
    drawn = 0
    subsets = [(d, data["domain"] == d) for d in sorted(set(data["domain"].tolist()))]
    subsets.append(("pooled", np.ones(data["p"].size, dtype=bool)))
    for name, mask in subsets:
        y, p = data["label"][mask], data["p"][mask]
        if y.min() == y.max():
            continue
        fpr, tpr, _ = roc_curve(y, p)
        style = {"color": "black", "linewidth": 2} if name == "pooled" else {"linewidth": 1}
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, p):.3f})", **style)
        drawn += 1
    if drawn:
        ax.legend(loc="lower right", fontsize=7)
    else:
        ax.text(0.5, 0.5, "undefined: only one class present", ha="center", va="center")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity (atypical)")
    ax.set_title("ROC per domain", fontsize=10)
    return _png(fig)


def _decisions(data: Mapping[str, np.ndarray], threshold: float | None) -> np.ndarray:
    """Row decisions; missing ones from the row's threshold, else the report's, else 0.5."""
    thr = np.where(np.isnan(data["threshold"]), 0.5 if threshold is None else threshold, data["threshold"])
    return np.where(data["decision"] >= 0, data["decision"], (data["p"] >= thr).astype(np.int64))


def _plot_confusion(data: Mapping[str, np.ndarray], threshold: float | None) -> str:
    # start-up time: matplotlib and scikit-learn's plots load only when a report is drawn
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    decision = _decisions(data, threshold)
    panels = [("pooled", np.ones(decision.size, dtype=bool))]
    panels += [(d, data["domain"] == d) for d in sorted(set(data["domain"].tolist()))]
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = _figure("confusion matrices", 3.0 * cols, 2.9 * rows)
    for i, (name, mask) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        cm = confusion_matrix(data["label"][mask], decision[mask], labels=[0, 1])
        ConfusionMatrixDisplay(cm, display_labels=[CLASS_NAMES[NORMAL], CLASS_NAMES[ATYPICAL]]).plot(
            ax=ax, colorbar=False, cmap="Blues", values_format="d"
        )
        ax.set_title(f"{name} (n={int(mask.sum())})", fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _plot_reliability(data: Mapping[str, np.ndarray]) -> str:
    """Pooled and per-domain reliability curves, each with its ECE: a probability that holds on one scanner can
    be off on another, and a domain with fewer atypical figures sees its curve fall below the diagonal."""
    by_domain = calibration_by_domain(data["label"], data["p"], data["domain"])
    pooled = by_domain["pooled"]
    bins = pooled["bins"]
    fig = _figure("reliability diagram", 4.8, 4.6)
    ax = fig.add_axes((0.12, 0.38, 0.8, 0.55))
    hist = fig.add_axes((0.12, 0.1, 0.8, 0.2), sharex=ax)
    ax.plot([0, 1], [0, 1], color="0.7", linewidth=0.8)
    domains = by_domain["domains"] if len(by_domain["domains"]) > 1 else {}
    for name, entry in domains.items():
        full = [b for b in entry["bins"] if b["count"]]
        ax.plot([b["mean_p"] for b in full], [b["frac_pos"] for b in full], marker=".", linewidth=0.8, alpha=0.8,
                label=f"{name} ({entry['prevalence']:.0%} atypical), ECE {entry['ece']:.3f}")
    full = [b for b in bins if b["count"]]
    ax.plot([b["mean_p"] for b in full], [b["frac_pos"] for b in full], marker="o", color="black",
            label=f"all ({pooled['prevalence']:.0%} atypical), ECE {pooled['ece']:.3f}")
    ax.legend(fontsize=6, loc="upper left")
    ax.set_ylabel("fraction atypical")
    ax.set_title(f"Reliability of p(atypical), ECE {pooled['ece']:.3f} ({len(bins)} bins)", fontsize=10)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    width = bins[0]["hi"] - bins[0]["lo"]
    hist.bar([b["lo"] for b in bins], [b["count"] for b in bins], width=width, align="edge", color="0.6")
    hist.set_xlabel("p(atypical)")
    hist.set_ylabel("figures", fontsize=8)
    return _png(fig)


def _plot_votes(data: Mapping[str, np.ndarray], threshold: float | None) -> str:
    fig = _figure("scores by atypical votes", 5.2, 3.8)
    ax = fig.add_subplot()
    keys = [k for k in (0, 1, 2, 3) if (data["votes"] == k).any()]
    values = [data["p"][data["votes"] == k] for k in keys]
    labels = [f"{k} atypical vote{'' if k == 1 else 's'}\n(n={v.size})" for k, v in zip(keys, values)]
    if (data["votes"] < 0).any() or (data["votes"] > 3).any():
        other = data["p"][(data["votes"] < 0) | (data["votes"] > 3)]
        values.append(other)
        labels.append(f"unknown\n(n={other.size})")
    ax.boxplot(values, showfliers=False)
    rng = np.random.default_rng(0)
    for i, v in enumerate(values):
        ax.scatter(i + 1 + rng.uniform(-0.15, 0.15, v.size), v, s=4, alpha=0.4, color="tab:blue")
    if threshold is not None:
        ax.axhline(
            threshold, color="tab:red", linestyle="--", linewidth=1, label=f"threshold {threshold:.3f}"
        )
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("p(atypical)")
    ax.set_title("Scores by number of atypical expert votes", fontsize=10)
    return _png(fig)


# --------------------------------------------------------------------------------------------- html
def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))


def _fmt_ci(entry: Mapping[str, Any], metric: str) -> str:
    text = _fmt(entry.get(metric))
    ci = _ci(entry, metric)
    return text if ci is None else f"{text} <small>[{ci[0]:.3f}, {ci[1]:.3f}]</small>"


def _summary_table(results: Mapping[str, Any]) -> str:
    head = (
        "<tr><th>domain</th><th>figures</th><th>atypical</th><th>balanced accuracy [95% CI]</th>"
        "<th>sensitivity</th><th>specificity</th><th>ROC AUC [95% CI]</th><th>PR AUC</th><th>ECE</th>"
        "<th>Brier</th></tr>"
    )

    def row(name: str, e: Mapping[str, Any], cls: str = "") -> str:
        cells = [
            html.escape(name),
            _fmt(e.get("n")),
            _fmt(e.get("n_pos")),
            _fmt_ci(e, "balanced_accuracy"),
            _fmt(e.get("sensitivity")),
            _fmt(e.get("specificity")),
            _fmt_ci(e, "roc_auc"),
            _fmt(e.get("pr_auc")),
            _fmt(e.get("ece")),
            _fmt(e.get("brier")),
        ]
        attr = f' class="{cls}"' if cls else ""
        return f"<tr{attr}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"

    body = [row(name, e) for name, e in results.get("per_domain", {}).items()]
    ddof = results.get("std_ddof", 1)
    body.append(
        f'<tr class="agg"><td>mean ± std over domains (ddof={ddof})</td><td></td><td></td>'
        f"<td>{html.escape(format_mean_std(results.get('domain_mean'), results.get('domain_std')))}</td>"
        '<td colspan="6"></td></tr>'
    )
    body.append(row("pooled (challenge ranking)", _pooled(results), "agg"))
    notes = []
    left_out = results.get("domains_left_out") or []
    if left_out:
        notes.append(
            "Left out of the mean (balanced accuracy undefined, one class only): "
            + ", ".join(html.escape(str(d)) for d in left_out)
        )
    if results.get("threshold") is not None:
        notes.append(f"Decision threshold on p(atypical): {float(results['threshold']):.4f}")
    elif "threshold" in results:
        notes.append("Decision thresholds differ between folds (each fold chose its own).")
    note_html = "".join(f"<p>{n}</p>" for n in notes)
    return f"<table>{head}{''.join(body)}</table>{note_html}"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}tr.agg{font-weight:bold;background:#f4f4f4}
section{margin-bottom:2em}img{max-width:100%}pre{background:#f6f6f6;padding:1em;overflow:auto}
"""


def _summary_of(results: Mapping[str, Any]) -> Mapping[str, Any]:
    """The per_domain_metrics dict: ``results`` itself or, as ``cv`` writes it, ``results["summary"]``."""
    if "per_domain" not in results and isinstance(results.get("summary"), Mapping):
        return results["summary"]
    return results


def _json_block(label: str, obj: Any) -> str:
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    return f"<details><summary>{html.escape(label)}</summary><pre>{html.escape(text)}</pre></details>"


def _document(title: str, intro: str, parts: list[tuple[str, str, str]]) -> str:
    sections = "\n".join(
        f'<section id="{sid}"><h2>{name}</h2>\n{body}\n</section>' for sid, name, body in parts
    )
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>{intro}; created {created}.</p>\n{sections}\n</body></html>\n"
    )


def plots_available() -> bool:
    """Whether the report's plots can be drawn here (matplotlib and scikit-learn installed)."""
    return all(importable(name) for name in PLOT_MODULES)


def write_report(
    out_html: str | Path,
    results: Mapping[str, Any],
    predictions: Iterable[Mapping[str, Any]],
    title: str = "mitotype evaluation",
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Write the HTML report; returns its path.

    ``results`` is the output of :func:`~mitotype.evaluation.metrics.per_domain_metrics` (with or
    without ``"ci"`` entries), or a run's results dict holding it under ``"summary"`` (then its
    other entries, e.g. folds and environment, are shown as run details). ``predictions`` are rows
    with the keys of :data:`PREDICTION_COLUMNS`; a missing ``decision`` is taken from the row's
    ``threshold`` or the summary's. ``config`` (default ``results["config"]``) is shown as a
    collapsible JSON block. The report always has :data:`N_FIGURES` images, also with a single
    domain or a domain lacking one class, where the plotting libraries are installed; without them
    (:func:`plots_available`) it says so in their place.
    """
    data = _parse_rows(predictions)
    summary = _summary_of(results)
    threshold = summary.get("threshold", results.get("threshold"))
    threshold = None if threshold is None else float(threshold)
    cfg = config if config is not None else results.get("config", {})
    details = (
        {k: v for k, v in results.items() if k not in ("summary", "config")} if summary is not results else {}
    )
    blocks = _json_block("configuration (JSON)", cfg)
    if details:
        blocks += _json_block("run details (JSON)", details)
    n_domains = len(set(data["domain"].tolist()))
    if plots_available():
        plots = [
            ("balanced-accuracy", "Balanced accuracy per domain", _plot_balanced_accuracy(summary)),
            ("roc", "ROC curves", _plot_roc(data)),
            ("confusion", "Confusion matrices", _plot_confusion(data, threshold)),
            ("reliability", "Reliability diagram", _plot_reliability(data)),
            ("votes", "Scores by atypical votes", _plot_votes(data, threshold)),
        ]
    else:
        plots = [("plots", "Plots", f"<p>{html.escape(PLOTS_MISSING.capitalize())}.</p>")]
    parts = [("summary", "Summary", _summary_table(summary)), *plots, ("configuration", "Configuration", blocks)]
    intro = f"{_scope(results, cfg)}<br>{data['p'].size} figures, {n_domains} domain(s); atypical is the positive class"
    return atomic_write_text(out_html, _document(title, intro, parts))


def _scope(results: Mapping[str, Any], cfg: Mapping[str, Any]) -> str:
    """One line saying what the report shows: dataset, backbone, input size, epochs and seeds."""
    model = cfg.get("model") or {}
    optim = cfg.get("optim") or {}
    data = results.get("data") or (cfg.get("data") or {}).get("path") or "n/a"
    seeds = results.get("seeds") or ([cfg["seed"]] if "seed" in cfg else [])
    size = model.get("input_size") or "backbone default"
    parts = [f"dataset: {data}", f"backbone: {model.get('backbone', 'n/a')}", f"input size: {size}",
             f"epochs: {optim.get('epochs', 'n/a')}", f"seed(s): {', '.join(str(s) for s in seeds) or 'n/a'}"]
    if results.get("scheme"):
        parts.insert(1, f"scheme: {results['scheme']}")
    if "tta" in results:
        parts.append(f"TTA: {'on' if results['tta'] else 'off'}")
    return "<strong>" + html.escape(" · ".join(parts)) + "</strong>"


def write_ablation_report(
    out_html: str | Path, table: Mapping[str, Any], title: str = "mitotype ablation"
) -> Path:
    """HTML table (and a plot) of an ablation: each strategy switched off vs everything on.

    ``table`` is what ``mitotype.experiments.cv.run_ablation`` writes: ``{"scheme", "variants":
    {name: {"pooled": metrics, "domain_mean", "domain_std", "delta_vs_all": {"delta", "ci_low",
    "ci_high"}}}, "switches", "config", ...}``.
    """
    variants: Mapping[str, Any] = table.get("variants", {})
    head = (
        "<tr><th>variant</th><th>switch</th><th>pooled balanced accuracy</th><th>mean ± std over domains</th>"
        "<th>Δ vs all [95% CI]</th></tr>"
    )
    switches = table.get("switches", {})
    body = []
    for name, v in variants.items():
        d = v.get("delta_vs_all")
        delta = (
            ""
            if not d
            else f"{d['delta']:+.3f} <small>[{_fmt(d.get('ci_low'))}, {_fmt(d.get('ci_high'))}]</small>"
        )
        switch = switches.get(name.removeprefix("no_"), "") if name != "all" else "(everything on)"
        cells = [
            html.escape(name),
            html.escape(f"{switch}=false" if switch and name != "all" else switch),
            _fmt((v.get("pooled") or {}).get("balanced_accuracy")),
            html.escape(format_mean_std(v.get("domain_mean"), v.get("domain_std"))),
            delta,
        ]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    names = [n for n, v in variants.items() if v.get("delta_vs_all")]
    fig = _figure("ablation deltas", max(4.0, 1.0 + 0.8 * len(names)), 3.4)
    ax = fig.add_subplot()
    for i, name in enumerate(names):
        d = variants[name]["delta_vs_all"]
        lo, hi = d.get("ci_low"), d.get("ci_high")
        ok = lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi)
        yerr = [[max(0.0, d["delta"] - lo)], [max(0.0, hi - d["delta"])]] if ok else None
        ax.bar(i, d["delta"], yerr=yerr, capsize=4, color="tab:red" if d["delta"] < 0 else "tab:green")
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("Δ pooled balanced accuracy")
    ax.set_title("Switching one strategy off (95% slide-bootstrap interval)", fontsize=10)
    parts = [
        ("summary", "Summary", f"<table>{head}{''.join(body)}</table>"),
        ("deltas", "Change vs everything on", _png(fig)),
        ("configuration", "Configuration", _json_block("configuration (JSON)", table.get("config", {}))),
    ]
    intro = f"{len(variants)} variant(s), scheme {html.escape(str(table.get('scheme', '?')))}"
    return atomic_write_text(out_html, _document(title, intro, parts))
