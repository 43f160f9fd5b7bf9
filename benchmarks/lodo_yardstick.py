"""The prevalence-shift yardstick: leave-one-domain-out fold models on their held-out domain at 5-25 % atypical.

Reads the fold models of finished ``benchmarks/amibr_lodo.py`` runs (``--work``, one per seed) and scores every
held-out domain, without retraining, as it is and resampled to fewer atypical figures (``--prevalences``; each
resampled prevalence ``--draws`` times: every normal figure kept, atypical ones drawn without replacement), for
every test-time option:

- views: one view, 8-view dihedral TTA;
- BatchNorm statistics: the source's; re-estimated on the whole input (AdaBN ``domain``); re-estimated on the
  input re-weighted to the training batches' class mix by the source model's calibrated p (``balanced``, the
  candidate fix: statistics that do not follow the input's share of atypical figures); re-estimated on each
  16 figures as a challenge stack arrives (``stack16``);
- threshold rules: the validation argmax (``validation``) and the Platt crossing (``platt``), both from the
  fold's own validation slides scored the same way (AdaBN per validation domain where the variant adapts);
- calibration: p(atypical) through the Platt map fitted on those validation scores; its expected calibration
  error as given (``ece_calibrated``) and re-expressed at the input's true prevalence (``ece_at_prevalence``,
  what a user who states the prevalence of their cohort gets with ``--prevalence``), beside the raw scores'.

With several ``--work`` folders (seeds of one recipe) the one-view and TTA options are also scored as the seed
ensemble (members' calibrated p averaged, thresholds on the same scale averaged), the shipped model's candidate.

Scores are kept per fold in ``yardstick.json`` beside each fold's model (AdaBN options: one score per figure of
every draw), so the analysis is re-run from them without inference. The summary's keys read like
``lodo_transfer.py``'s (``tta|platt`` at the natural prevalence, ``tta@5%|platt`` resampled), so
``lodo_levers.py`` puts any of them in the lever table (``lodo_yardstick_224_s0@tta@5%|platt``).

    python benchmarks/lodo_yardstick.py --work /tmp/lodo224/full-s0 --seeds 0 --set model.input_size=224 \\
        --name lodo_yardstick_224_s0
    python benchmarks/lodo_yardstick.py --work /tmp/lodo224/full-s0 /tmp/lodo224/full-s1 --seeds 0 1 \\
        --set model.input_size=224 --variants single tta --name lodo_yardstick_224_ensemble
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, finished_lodo_folds, run_script, shared_data_dir, write_result

STACK = 16
BN_SAMPLE = 512
"""Figures per AdaBN estimate (a seeded uniform sample of the input when it has more): a few hundred figures fix
BatchNorm statistics to well under their domain-to-domain spread, at a fraction of a full pass."""
VARIANTS: dict[str, tuple[bool, str]] = {
    "single": (False, "off"),
    "tta": (True, "off"),
    "single+adabn-domain": (False, "domain"),
    "tta+adabn-domain": (True, "domain"),
    "single+adabn-balanced": (False, "balanced"),
    "tta+adabn-balanced": (True, "balanced"),
    "single+adabn-stack16": (False, "stack"),
}
"""name: (8-view TTA, BatchNorm statistics)."""
RULES = ("validation", "platt")
ENSEMBLE = "ensemble"


def prevalence_key(prevalence: float | None) -> str:
    return "natural" if prevalence is None else f"{prevalence:g}"


def variant_label(variant: str, prevalence: float | None) -> str:
    """``tta`` at the natural prevalence, ``tta@5%`` resampled (the lever table's scoring names)."""
    return variant if prevalence is None else f"{variant}@{prevalence * 100:g}%"


# ------------------------------------------------------------------------------------------------ scoring
def _bn_rows(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rows if len(rows) <= BN_SAMPLE else np.sort(rng.choice(rows, BN_SAMPLE, replace=False))


def _balanced_rows(rows: np.ndarray, p_source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows drawn with replacement so that, by the source model's calibrated p, half are atypical (the class
    mix that class-balanced sampling showed the BatchNorm layers while they trained)."""
    from mitotype.models.adabn import class_balanced_rows

    picks = class_balanced_rows(p_source, share=0.5, size=min(len(rows), BN_SAMPLE), rng=rng)
    return rows[picks]


class FoldScorer:
    """One fold model's scores of any rows, under any view and BatchNorm option (ONNX Runtime where it helps)."""

    def __init__(self, model: Any, images: np.ndarray, onnx_dir: Path | None) -> None:
        self.model, self.images, self.onnx_dir = model, images, onnx_dir
        self._exports = 0

    def _runner(self, model: Any, tta: bool) -> Any:
        from mitotype.models.onnx_runtime import OnnxClassifier, export_onnx

        if not tta or self.onnx_dir is None:
            return model
        self._exports += 1
        return OnnxClassifier(export_onnx(model, self.onnx_dir / f"m{self._exports}.onnx"))

    def scores(self, rows: np.ndarray, tta: bool, model: Any = None) -> np.ndarray:
        from mitotype.models.predict import raw_probabilities

        runner = self._runner(self.model if model is None else model, tta)
        return raw_probabilities(runner, self.images, rows, batch_size=128, tta=tta).astype(np.float64)

    def adapted(self, rows: np.ndarray) -> Any:
        from mitotype.models.adabn import adapt_batchnorm

        return adapt_batchnorm(self.model, self.images, rows, batch_size=STACK * 4)

    def adaptive_scores(self, rows: np.ndarray, mode: str, views: Sequence[bool], p_source: np.ndarray | None,
                        seed: int) -> dict[bool, np.ndarray]:
        """Scores of ``rows`` (one domain's figures) for each view in ``views`` with BatchNorm statistics
        re-estimated as ``mode`` says; ``p_source``: the source model's calibrated p of ``rows`` (balanced)."""
        rng = np.random.default_rng(seed)
        if mode == "stack":  # one view: a stack's 16 figures are adapted to and scored as the container does
            out = np.empty(len(rows))
            order = rng.permutation(len(rows))
            for chunk in np.array_split(order, max(1, int(np.ceil(len(rows) / STACK)))):
                out[chunk] = self.scores(rows[chunk], False, self.adapted(rows[chunk]))
            return {False: out}
        bn = _balanced_rows(rows, p_source, rng) if mode == "balanced" else _bn_rows(rows, rng)
        adapted = self.adapted(bn)
        return {tta: self.scores(rows, tta, adapted) for tta in views}


def score_fold(scorer: FoldScorer, y_val: np.ndarray, val_idx: np.ndarray, d_val: np.ndarray, y_test: np.ndarray,
               test_idx: np.ndarray, variants: Sequence[str], prevalences: Sequence[float | None], n_draws: int,
               seed: int, cached: dict[str, Any] | None, log: Any = print) -> dict[str, Any]:
    """Every wanted variant's validation scores and held-out scores (per draw for adaptive ones); variants
    stored in ``cached`` are kept, not scored again."""
    from mitotype.evaluation.prevalence import prevalence_draws
    from mitotype.evaluation.thresholds import fit_platt
    from mitotype.models.calibration import fitted_calibration

    out: dict[str, Any] = {"y_val": y_val.tolist(), "y_test": y_test.tolist(),
                           "variants": dict((cached or {}).get("variants", {}))}
    stored = out["variants"]
    for variant in ("single", "tta"):  # one view is the source every adaptive option's calibration starts from
        if variant in stored or (variant == "tta" and variant not in variants):
            continue
        tta = variant == "tta"
        stored[variant] = {"p_val": scorer.scores(val_idx, tta).tolist(),
                           "p_test": scorer.scores(test_idx, tta).tolist()}
        log(f"  {variant}: scored")
    source = stored["single"]
    cal = fitted_calibration(*fit_platt(y_val, source["p_val"]), y_val)
    p_source_test = cal.apply(source["p_test"]) if cal else np.asarray(source["p_test"])
    p_source_val = cal.apply(source["p_val"]) if cal else np.asarray(source["p_val"])
    modes = sorted({VARIANTS[v][1] for v in variants} - {"off"})
    for mode in modes:
        names = [v for v in variants if VARIANTS[v][1] == mode and v not in stored]
        if not names:
            continue
        views = [VARIANTS[v][0] for v in names]
        t0 = time.perf_counter()
        p_val = {tta: np.empty(len(val_idx)) for tta in views}
        for d in np.unique(d_val):
            rows = np.flatnonzero(d_val == d)
            got = scorer.adaptive_scores(val_idx[rows], mode, views, p_source_val[rows], seed)
            for tta in views:
                p_val[tta][rows] = got[tta]
        draws: dict[bool, dict[str, list[list[float]]]] = {tta: {} for tta in views}
        for prevalence in prevalences:
            for k, rows in enumerate(prevalence_draws(y_test, prevalence, n_draws, seed)):
                got = scorer.adaptive_scores(test_idx[rows], mode, views, p_source_test[rows], seed + k)
                for tta in views:
                    draws[tta].setdefault(prevalence_key(prevalence), []).append(got[tta].tolist())
        for name, tta in zip(names, views):
            stored[name] = {"p_val": p_val[tta].tolist(), "draws": draws[tta]}
        log(f"  {', '.join(names)}: scored in {time.perf_counter() - t0:.0f} s")
    return out


# ----------------------------------------------------------------------------------------------- analysis
def member_scores(fold: dict[str, Any], variant: str, prevalence: float | None, n_draws: int,
                  seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, raw p) of each draw of one fold's variant at one prevalence."""
    from mitotype.evaluation.prevalence import prevalence_draws

    y_test = np.asarray(fold["y_test"])
    draws = prevalence_draws(y_test, prevalence, n_draws, seed)
    entry = fold["variants"][variant]
    if "p_test" in entry:
        p = np.asarray(entry["p_test"])
        return [(rows, p[rows]) for rows in draws]
    stored = entry["draws"][prevalence_key(prevalence)]
    if len(stored) < len(draws):
        raise SystemExit(f"error: {variant} was scored with {len(stored)} draw(s) at {prevalence_key(prevalence)}; "
                         f"rerun with --draws {len(stored)} or --recompute")
    return [(rows, np.asarray(p)) for rows, p in zip(draws, stored)]


def calibrated_member(fold: dict[str, Any], variant: str) -> tuple[Any, dict[str, float]]:
    """The variant's Platt map on its validation scores and each rule's threshold on the calibrated scale
    (raw scores where the fit cannot keep the ranking)."""
    from mitotype.evaluation.metrics import best_threshold
    from mitotype.evaluation.thresholds import fit_platt, platt_threshold
    from mitotype.models.calibration import fitted_calibration

    y_val, p_val = np.asarray(fold["y_val"]), np.asarray(fold["variants"][variant]["p_val"])
    cal = fitted_calibration(*fit_platt(y_val, p_val), y_val)
    raw = {"validation": best_threshold(y_val, p_val), "platt": platt_threshold(y_val, p_val)}
    return cal, {rule: cal.threshold(t) if cal else t for rule, t in raw.items()}


def fold_draws(members: Sequence[dict[str, Any]], variant: str, prevalence: float | None, n_draws: int,
               seed: int) -> list[dict[str, Any]]:
    """Per draw: labels, raw p (members' mean), calibrated p (members' calibrated mean) and each rule's
    threshold on the calibrated scale (members' mean)."""
    from mitotype.models.calibration import shift_prior

    y_test = np.asarray(members[0]["y_test"])
    per_member = [member_scores(m, variant, prevalence, n_draws, seed) for m in members]
    maps = [calibrated_member(m, variant) for m in members]
    out = []
    for k in range(len(per_member[0])):
        rows = per_member[0][k][0]
        raw = np.mean([scores[k][1] for scores in per_member], axis=0)
        cal = np.mean([c.apply(scores[k][1]) if c else scores[k][1] for scores, (c, _) in zip(per_member, maps)],
                      axis=0)
        thresholds = {rule: float(np.mean([t[rule] for _, t in maps])) for rule in RULES}
        source_prevalence = float(np.mean([c.prevalence for c, _ in maps if c])) if all(c for c, _ in maps) else None
        y = y_test[rows]
        at_prevalence = (shift_prior(cal, source_prevalence, float(y.mean())) if source_prevalence else cal)
        out.append({"y": y, "raw": raw, "calibrated": cal, "at_prevalence": at_prevalence, "thresholds": thresholds})
    return out


def _rates(y: np.ndarray, decide: np.ndarray) -> tuple[float, float]:
    return float(decide[y == 1].mean()), float((~decide[y == 0]).mean())


def analyse(folds: dict[str, list[dict[str, Any]]], variant: str, prevalences: Sequence[float | None],
            n_draws: int, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Summary rows (``<variant label>|<rule>``) and per-domain entries of one variant, pooled draw by draw."""
    from mitotype.evaluation.metrics import expected_calibration_error
    from mitotype.evaluation.prevalence import draw_metrics, summarise_draws

    summary: dict[str, Any] = {}
    per_domain: dict[str, Any] = {}
    for prevalence in prevalences:
        label = variant_label(variant, prevalence)
        by_fold = {name: fold_draws(members, variant, prevalence, n_draws, seed) for name, members in folds.items()}
        for rule in RULES:
            domain_rows: dict[str, list[dict[str, Any]]] = {}
            pooled: list[dict[str, float]] = []
            for k in range(len(next(iter(by_fold.values())))):
                ys, decisions, cals, raws, shifted = [], [], [], [], []
                for name, draws in by_fold.items():
                    d = draws[k]
                    t = d["thresholds"][rule]
                    m = draw_metrics(d["y"], d["calibrated"], t)
                    m["ece_raw"] = expected_calibration_error(d["y"], d["raw"])
                    m["ece_at_prevalence"] = expected_calibration_error(d["y"], d["at_prevalence"])
                    m["threshold"] = t
                    domain_rows.setdefault(name, []).append(m)
                    ys.append(d["y"])
                    decisions.append(d["calibrated"] >= t)
                    cals.append(d["calibrated"])
                    raws.append(d["raw"])
                    shifted.append(d["at_prevalence"])
                y = np.concatenate(ys)
                sens, spec = _rates(y, np.concatenate(decisions))
                pooled.append({"balanced_accuracy": (sens + spec) / 2, "sensitivity": sens, "specificity": spec,
                               "ece": expected_calibration_error(y, np.concatenate(cals)),
                               "ece_raw": expected_calibration_error(y, np.concatenate(raws)),
                               "ece_at_prevalence": expected_calibration_error(y, np.concatenate(shifted))})
            domains = {}
            for name, rows in domain_rows.items():
                s = summarise_draws(rows)
                for extra in ("ece_raw", "ece_at_prevalence", "threshold"):
                    s[extra] = float(np.mean([r[extra] for r in rows]))
                domains[name] = s
                per_domain.setdefault(name, {}).setdefault(label, {"rules": {}})["rules"][rule] = s
            summary[f"{label}|{rule}"] = {
                "draws": len(pooled),
                **{f"pooled_{k}": float(np.mean([p[k] for p in pooled])) for k in pooled[0]},
                "pooled_balanced_accuracy_sd": float(np.std([p["balanced_accuracy"] for p in pooled], ddof=1))
                if len(pooled) > 1 else None,
                "min_domain_balanced_accuracy": min(d["balanced_accuracy"] for d in domains.values()),
                "min_domain_sensitivity": min(d["sensitivity"] for d in domains.values()),
                "mean_domain_roc_auc": float(np.mean([d["roc_auc"] for d in domains.values()])),
            }
    return summary, per_domain


def markdown(summary: dict[str, Any]) -> str:
    head = ("| scoring | rule | pooled BA | sens | spec | worst domain BA | worst sens | mean AUC | ECE raw | "
            "ECE calibrated | ECE at stated prevalence |")
    lines = [head, "|" + " --- |" * 11]
    for key, s in summary.items():
        label, rule = key.split("|")
        sd = f" ± {s['pooled_balanced_accuracy_sd']:.3f}" if s.get("pooled_balanced_accuracy_sd") is not None else ""
        lines.append(f"| {label} | {rule} | {s['pooled_balanced_accuracy']:.3f}{sd} | {s['pooled_sensitivity']:.3f} | "
                     f"{s['pooled_specificity']:.3f} | {s['min_domain_balanced_accuracy']:.3f} | "
                     f"{s['min_domain_sensitivity']:.3f} | {s['mean_domain_roc_auc']:.3f} | "
                     f"{s['pooled_ece_raw']:.3f} | {s['pooled_ece']:.3f} | {s['pooled_ece_at_prevalence']:.3f} |")
    return "\n".join(lines)


def _prevalence(text: str) -> float | None:
    if text == "natural":
        return None
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"a prevalence lies strictly between 0 and 1 (or 'natural'), got {text}")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, nargs="+", required=True,
                        help="--work folder(s) of benchmarks/amibr_lodo.py runs of one recipe, one per seed")
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="the seed of each --work folder")
    parser.add_argument("--preset", default="full-cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--name", default="lodo_yardstick")
    parser.add_argument("--results-dir", type=Path, default=None, help="default benchmarks/results")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--prevalences", nargs="+", type=_prevalence, default=[None, 0.10, 0.05],
                        metavar="P", help="'natural' and/or shares of atypical figures (default: natural 0.1 0.05)")
    parser.add_argument("--draws", type=int, default=3, help="draws per resampled prevalence (default 3)")
    parser.add_argument("--draw-seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0,
                        help="only this many validation and held-out figures per fold (a quick check of the script)")
    parser.add_argument("--recompute", action="store_true", help="score every fold again (default: reuse "
                        "each fold's yardstick.json and score only the options it lacks)")
    parser.add_argument("--no-onnx", action="store_true", help="score TTA in eager PyTorch only")
    args = parser.parse_args()
    if len(args.seeds) != len(args.work):
        parser.error(f"give one --seeds value per --work folder ({len(args.work)} folders, {len(args.seeds)} seeds)")
    if args.draws < 1 or args.limit < 0:
        parser.error("--draws must be at least 1 and --limit 0 or more")
    for work in args.work:
        finished_lodo_folds(work)  # before the data is read

    from mitotype.evaluation.splits import validation_split
    from mitotype.experiments.cv import fold_model_dir, make_folds
    from mitotype.ioutils import write_json_atomic
    from mitotype.models.artifact import load_model_artifact
    from mitotype.models.onnx_runtime import onnx_available
    from mitotype.training.config import load_config
    from mitotype.training.inputs import load_data_figures

    start = time.perf_counter()
    folds: dict[str, list[dict[str, Any]]] = {}
    onnx_dir = None if args.no_onnx or not onnx_available() else Path(tempfile.mkdtemp(prefix="lodo-yardstick-"))
    for work, seed in zip(args.work, args.seeds):
        overrides = [f"data.path={shared_data_dir() / 'amibr'}", f"seed={seed}", *args.overrides]
        config = load_config(preset=args.preset, overrides=overrides)
        figures = load_data_figures(config.data, cache_dir=work / "cache")
        records = figures.records
        labels = np.array([r.label for r in records])
        domains = np.array([r.domain for r in records])
        for fold in make_folds(records, "lodo", 5, config.seed):
            model_dir = fold_model_dir(work / "cv", fold.name)
            if not (model_dir.parent / "predictions.json").is_file():
                print(f"{work}: {fold.name} not finished, skipped", flush=True)
                continue
            _, val_idx = validation_split(records, fold.train_idx, fraction=config.data.val_fraction,
                                          seed=config.seed)
            test_idx = np.asarray(fold.test_idx)
            if args.limit:
                pick = np.random.default_rng(0)
                val_idx = np.sort(pick.choice(val_idx, min(args.limit, len(val_idx)), replace=False))
                test_idx = np.sort(pick.choice(test_idx, min(args.limit, len(test_idx)), replace=False))
            cache_file = model_dir.parent / "yardstick.json"
            cached = None
            if cache_file.is_file() and not args.recompute and not args.limit:
                cached = json.loads(cache_file.read_text())
                if cached.get("draws") != args.draws or cached.get("draw_seed") != args.draw_seed:
                    cached = None  # other draws: the stored adaptive scores belong to other subsets
            stored = (cached or {}).get("variants", {})
            wanted_prev = {prevalence_key(p) for p in args.prevalences}
            todo = [v for v in args.variants if v not in stored or (
                "draws" in stored[v] and not wanted_prev <= set(stored[v]["draws"]))]
            for v in todo:
                stored.pop(v, None)
            print(f"{work.name} {fold.name}: {len(test_idx)} held-out figures; scoring {todo or 'nothing'}",
                  flush=True)
            if todo:
                model = load_model_artifact(model_dir, device="cpu").model.eval()
                scorer = FoldScorer(model, figures.images, onnx_dir)
                entry = score_fold(scorer, labels[val_idx], val_idx, domains[val_idx], labels[test_idx], test_idx,
                                   todo, args.prevalences, args.draws, args.draw_seed, cached)
                entry |= {"draws": args.draws, "draw_seed": args.draw_seed}
                if not args.limit:
                    write_json_atomic(cache_file, entry)
            else:
                entry = cached
            folds.setdefault(fold.name, []).append(entry)
    summary: dict[str, Any] = {}
    per_domain: dict[str, Any] = {}
    single_members = {name: members[:1] for name, members in folds.items()}
    for variant in args.variants:
        for tag, group in (("", single_members), (f"{ENSEMBLE}-", folds)):
            if tag and (len(args.work) < 2 or VARIANTS[variant][1] != "off"):
                continue
            s, d = analyse(group, variant, args.prevalences, args.draws, args.draw_seed)
            summary |= {f"{tag}{k}": v for k, v in s.items()}
            for name, entries in d.items():
                per_domain.setdefault(name, {}).update({f"{tag}{k}": v for k, v in entries.items()})
    for name, members in folds.items():
        y = np.asarray(members[0]["y_test"])
        per_domain[name] |= {"n_test": len(y), "n_pos": int(y.sum())}
    write_result(args.name, command_line(),
                 {"summary": summary, "per_domain": per_domain, "folds": list(folds),
                  "wall_seconds": time.perf_counter() - start},
                 extra={"preset": args.preset, "seed": args.seeds[0], "seeds": args.seeds,
                        "overrides": args.overrides, "draws": args.draws, "draw_seed": args.draw_seed,
                        "prevalences": [prevalence_key(p) for p in args.prevalences],
                        "bn_sample": BN_SAMPLE, "onnx": onnx_dir is not None, "limit": args.limit},
                 path=args.results_dir / f"{args.name}.json" if args.results_dir else None)
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
