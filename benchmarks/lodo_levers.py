"""The lever table of leave-one-domain-out: each training lever against the baseline, beside the seed spread.

Reads ``amibr_lodo.py`` results (``benchmarks/results/<name>.json``): the baseline's runs (one per seed) and
each lever's runs (the baseline recipe plus one switch, same fold scheme, same seeds where it has them). For
every run it takes the pooled balanced accuracy, the mean, worst and per-domain balanced accuracy, the worst
held-out sensitivity and the mean ROC AUC; a lever's change is paired by seed (its run minus the baseline's run
of the same seed), and the baseline's spread is the sample sd of its runs over seeds, for a balanced accuracy at
least the mean per-domain sd over seeds (``noise``). A lever whose change does not exceed that spread is reported
as such (``beats_spread: false``). Writes ``results/<name>.json``.

A test-time choice is a lever too: ``RESULT@VARIANT|RULE`` reads a ``lodo_transfer.py`` result of the same fold
models scored another way (``lodo_transfer_224_full_s0@tta|platt``: 8-view TTA at the Platt threshold), so the
chosen combination sits in the same table as the training levers.

Every run must hold out the baseline's domains. ``--domains`` compares on a subset instead (a lever run over only
some folds, an interrupted LODO): every figure, the pooled balanced accuracy too, is recomputed over those domains
from the per-domain counts (true positives = sensitivity x positives, true negatives likewise).

    python benchmarks/lodo_levers.py --name lodo_levers_128_e6 \\
        --baseline amibr_lodo_128_e6_base_s0 amibr_lodo_128_e6_base_s1 \\
        --lever ema=amibr_lodo_128_e6_ema_s0 --lever stain-augment=amibr_lodo_128_e6_stainaug_s0
    python benchmarks/lodo_levers.py --name lodo_levers_224 \\
        --baseline amibr_lodo_224_full_s0 amibr_lodo_224_full_s1 \\
        --lever "tta+platt=lodo_transfer_224_full_s0@tta|platt,lodo_transfer_224_full_s1@tta|platt"
    python benchmarks/lodo_levers.py --name lodo_levers_224_plain --domains TUPAC16 "Aperio CS2" \\
        --baseline amibr_lodo_224_full_s0 amibr_lodo_224_full_s1 --lever plain=amibr_lodo_224_plain_s0
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, command_line, run_script, write_result

METRICS = ("pooled_ba", "mean_ba", "worst_ba", "worst_sens", "mean_auc")
BA_METRICS = ("pooled_ba", "mean_ba", "worst_ba")


def pooled_balanced_accuracy(domains: dict[str, dict[str, float]]) -> float:
    """Balanced accuracy over the figures of several held-out domains, from each domain's counts and rates."""
    positives = sum(d["n_pos"] for d in domains.values())
    negatives = sum(d["n"] - d["n_pos"] for d in domains.values())
    true_pos = sum(d["sensitivity"] * d["n_pos"] for d in domains.values())
    true_neg = sum(d["specificity"] * (d["n"] - d["n_pos"]) for d in domains.values())
    return (true_pos / positives + true_neg / negatives) / 2


def domain_figures(result: dict[str, Any], pooled_ba: float, domains: dict[str, dict[str, float]],
                   only: list[str] | None = None) -> dict[str, Any]:
    """The lever table's figures of one run: its pooled and mean balanced accuracy, the worst domain, the worst
    sensitivity and the mean ROC AUC; over the domains ``only`` when given (pooled recomputed from counts)."""
    if not domains:
        raise ValueError("no held-out domain in this result")
    if only is not None:
        missing = [name for name in only if name not in domains]
        if missing:
            names = ", ".join(map(repr, missing))
            raise ValueError(f"no held-out domain {names} (it has {', '.join(sorted(domains))})")
        domains = {name: domains[name] for name in only}
        pooled_ba = pooled_balanced_accuracy(domains)
    return {
        "seed": result.get("extra", {}).get("seed"),
        "pooled_ba": pooled_ba,
        "mean_ba": statistics.fmean(d["balanced_accuracy"] for d in domains.values()),
        "worst_ba": min(d["balanced_accuracy"] for d in domains.values()),
        "worst_sens": min(d["sensitivity"] for d in domains.values()),
        "mean_auc": statistics.fmean(d["roc_auc"] for d in domains.values()),
        "per_domain_ba": {name: d["balanced_accuracy"] for name, d in sorted(domains.items())},
        "per_domain_sens": {name: d["sensitivity"] for name, d in sorted(domains.items())},
        "wall_seconds": result["figures"].get("wall_seconds"),
    }


def run_figures(result: dict[str, Any], only: list[str] | None = None) -> dict[str, Any]:
    """The lever table's figures of one ``amibr_lodo.py`` result."""
    figures = result["figures"]
    return domain_figures(result, figures["pooled"]["balanced_accuracy"], figures["per_domain"], only)


def transfer_figures(result: dict[str, Any], scoring: str, only: list[str] | None = None) -> dict[str, Any]:
    """The lever table's figures of one ``lodo_transfer.py`` result scored as ``VARIANT|RULE``."""
    figures = result["figures"]
    variant, _, rule = scoring.partition("|")
    if scoring not in figures["summary"]:
        variants = sorted({key.partition("|")[0] for key in figures["summary"]})
        rules = sorted({key.partition("|")[2] for key in figures["summary"]})
        raise ValueError(f"no scoring {scoring!r}: variants {', '.join(variants)}; rules {', '.join(rules)}")
    domains = {fold.removeprefix("lodo-"): {**entry[variant]["rules"][rule], "n": entry["n_test"],
                                            "n_pos": entry["n_pos"]}
               for fold, entry in figures["per_domain"].items()}
    return domain_figures(result, figures["summary"][scoring]["pooled_balanced_accuracy"], domains, only)


def load_run(name: str, only: list[str] | None = None) -> dict[str, Any]:
    """An ``amibr_lodo.py`` result by name or path, or ``NAME@VARIANT|RULE`` for a ``lodo_transfer.py`` one;
    ``only``: its figures over those held-out domains."""
    name, _, scoring = name.partition("@")
    path = RESULTS_DIR / f"{name}.json" if not name.endswith(".json") else Path(name)
    if not path.is_file():
        raise SystemExit(f"{path}: no such result")
    kind = "lodo_transfer.py" if scoring else "amibr_lodo.py"
    try:
        result = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SystemExit(f"{path}: not a readable JSON result ({type(error).__name__})") from None
    try:
        figures = transfer_figures(result, scoring, only) if scoring else run_figures(result, only)
    except ValueError as error:
        raise SystemExit(f"{path}: {error}") from None
    except KeyError as error:
        raise SystemExit(f"{path}: not an {kind} result (no field {error})") from None
    except (TypeError, AttributeError):
        raise SystemExit(f"{path}: not an {kind} result (its fields have other types)") from None
    figures["result"] = f"{path.stem}@{scoring}" if scoring else path.stem
    return figures


def lever_table(baseline: list[dict[str, Any]], levers: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Baseline mean and spread per metric; per lever its mean, and its change paired by seed against the spread
    (:func:`mitotype.evaluation.comparisons.seed_paired_table`, the comparisons every ablation uses)."""
    from mitotype.evaluation.comparisons import ComparisonError, seed_paired_table

    try:
        return seed_paired_table(baseline, levers, METRICS, BA_METRICS)
    except ComparisonError as error:
        raise SystemExit(str(error)) from None


def markdown(table: dict[str, Any]) -> str:
    """One row per recipe: the baseline as mean ± sd over seeds, each lever as its mean (paired change), starred
    where the change exceeds the spread."""
    head = "| recipe | seeds | pooled BA | mean domain BA | worst domain BA | worst sens | mean AUC |"
    lines = [head, "|" + " --- |" * 7]
    base = table["baseline"]
    cells = [f"{base[m]['mean']:.3f} ± {base[m]['sd']:.3f}" if base[m]["sd"] is not None
             else f"{base[m]['mean']:.3f}" for m in METRICS]
    lines.append(f"| baseline | {len(base['runs'])} | " + " | ".join(cells) + " |")
    if any(base["noise"][m] is not None for m in METRICS):
        cells = [f"{base['noise'][m]:.3f}" if base["noise"][m] is not None else "" for m in METRICS]
        lines.append("| a change must exceed | | " + " | ".join(cells) + " |")
    for lever, row in table.items():
        if lever == "baseline":
            continue
        cells = [f"{row[m]['mean']:.3f} ({row[m]['change']:+.3f}){'*' if row[m]['beats_spread'] else ''}"
                 for m in METRICS]
        lines.append(f"| {lever} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
    lines.append("\n(*: the change exceeds the spread)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", nargs="+", required=True, metavar="RESULT",
                        help="the baseline's amibr_lodo results (names in benchmarks/results or paths), one per seed")
    parser.add_argument("--lever", action="append", default=[], metavar="NAME=RESULT[,RESULT]",
                        help="a lever and its runs (the baseline plus one switch); repeat per lever")
    parser.add_argument("--domains", nargs="+", default=None, metavar="DOMAIN",
                        help="compare over these held-out domains only (every run must hold them out)")
    parser.add_argument("--name", default="lodo_levers", help="results name")
    args = parser.parse_args()
    levers: dict[str, list[dict[str, Any]]] = {}
    for spec in args.lever:
        lever, sep, names = spec.partition("=")
        runs = names.split(",")
        if not sep or not lever or not all(runs):
            parser.error(f"--lever {spec!r}: expected NAME=RESULT[,RESULT]")
        if lever == "baseline" or lever in levers:
            parser.error(f"--lever {spec!r}: the name {lever!r} is {'taken' if lever in levers else 'reserved'}")
        levers[lever] = [load_run(n, args.domains) for n in runs]
        seeds = [run["seed"] for run in levers[lever]]
        if len(set(seeds)) != len(seeds):
            parser.error(f"--lever {spec!r}: one run per seed (seeds {seeds})")
    table = lever_table([load_run(n, args.domains) for n in args.baseline], levers)
    text = markdown(table)
    write_result(args.name, command_line(), {"table": table, "markdown": text})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
