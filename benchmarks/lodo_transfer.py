"""What makes a leave-one-domain-out model hold on its unseen domain: thresholds, TTA and AdaBN, measured.

Reads the fold models of a finished ``benchmarks/amibr_lodo.py`` run (``--work``) and, for every held-out
domain, scores its figures under each test-time choice without retraining:

- views: single view, 8-view dihedral TTA;
- BatchNorm statistics: the source's (``off``), re-estimated on the whole held-out domain (``domain``),
  or on each group of 16 figures as a challenge stack arrives (``stack``, single view);
- threshold rules (``mitotype.evaluation.thresholds``): the in-domain validation threshold (today),
  ``robust`` (best worst-domain balanced accuracy over the validation domains), temperature-calibrated
  at the training prevalence and at 0.5, ``rate`` / ``rate-em`` (label-free: the target quantile
  matching the validation positive rate at the training prevalence / at an EM estimate of the target's),
  and ``oracle`` (the held-out labels' own best threshold: an upper bound, never a choice).

Validation scores are computed the same way as the held-out ones (the same views, AdaBN per validation
domain), so each rule sees a consistent source. No held-out label reaches any choice. Each fold's scores
are kept in its ``transfer.json``, so a rule added later is applied without scoring again.

    python benchmarks/lodo_transfer.py --work /tmp/lodo224/full-s0 --preset full-cpu --set model.input_size=224
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, finished_lodo_folds, run_script, shared_data_dir, write_result

STACK = 16
VARIANTS = [("single", False, "off"), ("tta", True, "off"), ("single+adabn-domain", False, "domain"),
            ("tta+adabn-domain", True, "domain"), ("single+adabn-stack16", False, "stack")]
"""(name, 8-view TTA, BatchNorm statistics) of every way the held-out figures are scored."""


_GRAPHS: dict[int, Any] = {}


def _scores(model: Any, images: np.ndarray, idx: np.ndarray, tta: bool, onnx_dir: Path | None) -> np.ndarray:
    """p(atypical) of rows ``idx``; TTA through ONNX Runtime when available (same numbers, about 7x faster
    here), the model exported once and reused."""
    from mitotype.models.onnx_runtime import OnnxClassifier, export_onnx
    from mitotype.models.predict import raw_probabilities

    runner = model
    if tta and onnx_dir is not None:
        if id(model) not in _GRAPHS:
            _GRAPHS[id(model)] = (model, OnnxClassifier(export_onnx(model, onnx_dir / f"m{len(_GRAPHS)}.onnx")))
        runner = _GRAPHS[id(model)][1]
    return raw_probabilities(runner, images, idx, batch_size=128, tta=tta).astype(np.float64)


def _adapted_scores(model: Any, images: np.ndarray, idx: np.ndarray, groups: np.ndarray, mode: str, tta: bool,
                    onnx_dir: Path | None) -> np.ndarray:
    """Scores with BatchNorm statistics re-estimated per group (``domain``) or per 16 figures of a group."""
    from mitotype.models.adabn import adapt_batchnorm

    out = np.empty(len(idx))
    rng = np.random.default_rng(0)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        chunks = [rows] if mode == "domain" else np.array_split(rng.permutation(rows),
                                                                max(1, int(np.ceil(len(rows) / STACK))))
        for chunk in chunks:
            adapted = adapt_batchnorm(model, images, idx[chunk], batch_size=STACK)
            out[chunk] = _scores(adapted, images, idx[chunk], tta, onnx_dir if mode == "domain" else None)
    return out


def _rule_thresholds(y_val: np.ndarray, p_val: np.ndarray, d_val: np.ndarray, p_test: np.ndarray) -> dict[str, Any]:
    from mitotype.evaluation.metrics import best_threshold
    from mitotype.evaluation.thresholds import (
        apply_temperature,
        fit_temperature,
        platt_threshold,
        rate_matched_threshold,
        robust_threshold,
    )

    t_val = best_threshold(y_val, p_val)
    temperature = fit_temperature(y_val, p_val)
    prior = float(np.mean(y_val))
    rate_t, _ = rate_matched_threshold(y_val, p_val, t_val, p_test)
    rate_em, est_prior = rate_matched_threshold(y_val, p_val, t_val, p_test, prior="em", temperature=temperature)
    return {
        "validation": t_val,
        "robust": robust_threshold(y_val, p_val, d_val),
        # calibrated p >= c  <=>  raw p >= the raw score that calibrates to c
        "calibrated-prior": float(apply_temperature(prior, 1.0 / temperature)),
        "calibrated-0.5": 0.5,
        "platt": platt_threshold(y_val, p_val),
        "rate": rate_t,
        "rate-em": rate_em,
        "_temperature": temperature,
        "_estimated_prior": est_prior,
    }


def _metrics(y: np.ndarray, p: np.ndarray, thr: float) -> dict[str, float]:
    from mitotype.evaluation.metrics import binary_metrics

    m = binary_metrics(y, p, thr)
    return {k: float(m[k]) for k in ("balanced_accuracy", "sensitivity", "specificity", "roc_auc")} | {"threshold": thr}


def _rule_rows(y_val: np.ndarray, p_val: np.ndarray, d_val: np.ndarray, y_test: np.ndarray,
               p_test: np.ndarray) -> dict[str, Any]:
    """Every rule's threshold and held-out metrics for one variant's scores (cheap: no model involved)."""
    from mitotype.evaluation.metrics import best_threshold

    rules = _rule_thresholds(y_val, p_val, d_val, p_test)
    rows = {rule: _metrics(y_test, p_test, thr) for rule, thr in rules.items() if not rule.startswith("_")}
    rows["oracle"] = _metrics(y_test, p_test, best_threshold(y_test, p_test))
    return {"rules": rows, "temperature": rules["_temperature"], "estimated_prior": rules["_estimated_prior"],
            "true_prior": float(y_test.mean()), "p_test": p_test.tolist(), "p_val": p_val.tolist()}


def _analyse_fold(model: Any, figures: Any, labels: np.ndarray, domains: np.ndarray, val_idx: np.ndarray,
                  test_idx: np.ndarray, onnx_dir: Path | None, name: str,
                  variants: list[tuple[str, bool, str]], cached: dict[str, Any] | None) -> dict[str, Any]:
    """Every variant's held-out scores and every rule's threshold and metrics for one fold.

    A variant whose validation and held-out scores are in ``cached`` is not scored again, only its rules
    are re-applied (so a new rule costs no inference); cached variants outside ``variants`` are kept.
    """
    y_val, d_val, y_test = labels[val_idx], domains[val_idx], labels[test_idx]
    out: dict[str, Any] = {"n_test": len(test_idx), "n_pos": int(np.sum(y_test)), "y_test": y_test.tolist(),
                           "variants": dict((cached or {}).get("variants", {})), "seconds": 0.0}
    t0 = time.perf_counter()
    wanted = {v[0] for v in variants}
    for variant, scored in list(out["variants"].items()):
        if "p_val" in scored and variant not in wanted:
            out["variants"][variant] = _rule_rows(y_val, np.asarray(scored["p_val"]), d_val, y_test,
                                                  np.asarray(scored["p_test"]))
    for variant, tta, mode in variants:
        scored = out["variants"].get(variant, {})
        if "p_val" in scored:
            p_val, p_test = np.asarray(scored["p_val"]), np.asarray(scored["p_test"])
        elif mode == "off":
            p_val = _scores(model, figures.images, val_idx, tta, onnx_dir)
            p_test = _scores(model, figures.images, test_idx, tta, onnx_dir)
        else:
            p_val = _adapted_scores(model, figures.images, val_idx, d_val, mode, tta, onnx_dir)
            p_test = _adapted_scores(model, figures.images, test_idx, np.zeros(len(test_idx)), mode, tta, onnx_dir)
        out["variants"][variant] = _rule_rows(y_val, p_val, d_val, y_test, p_test)
        rows = out["variants"][variant]["rules"]
        print(f"{name} {variant}: " + ", ".join(f"{r} {v['balanced_accuracy']:.3f}/{v['sensitivity']:.2f}"
                                               for r, v in rows.items())
              + f"; AUC {rows['validation']['roc_auc']:.3f}", flush=True)
    out["seconds"] = float((cached or {}).get("seconds", 0.0)) + time.perf_counter() - t0
    return out


def _needs_model(cached: dict[str, Any] | None, variants: list[tuple[str, bool, str]]) -> bool:
    """Whether some wanted variant has no stored validation and held-out scores."""
    stored = (cached or {}).get("variants", {})
    return any("p_val" not in stored.get(v[0], {}) for v in variants)


def _common_keys(per_fold: dict[str, Any]) -> list[str]:
    """``variant|rule`` keys every analysed fold has (folds analysed with fewer variants limit the summary)."""
    keys = [{f"{v}|{r}" for v in f["variants"] for r in f["variants"][v]["rules"]} for f in per_fold.values()]
    return sorted(set.intersection(*keys)) if keys else []


def _selected_by_other_domains(per_fold: dict[str, Any]) -> dict[str, Any] | None:
    """An honest figure for "pick the best variant and rule on LODO": for each held-out domain, the
    combination with the best mean balanced accuracy over the *other* folds is applied to it, so no
    domain's labels choose its own rule (the oracle rule is never a candidate)."""
    if len(per_fold) < 2:
        return None
    names = list(per_fold)
    candidates = [k for k in _common_keys(per_fold) if not k.endswith("|oracle")]

    def ba(fold: str, key: str) -> float:
        view, rule = key.split("|")
        return per_fold[fold]["variants"][view]["rules"][rule]["balanced_accuracy"]

    choices, y_all, decide_all, per_domain = {}, [], [], {}
    for name in names:
        others = [o for o in names if o != name]
        key = max(candidates, key=lambda k: (np.mean([ba(o, k) for o in others]), k == "single|validation"))
        view, rule = key.split("|")
        row = per_fold[name]["variants"][view]["rules"][rule]
        choices[name] = key
        per_domain[name] = row
        y_all.append(np.asarray(per_fold[name]["y_test"]))
        decide_all.append(np.asarray(per_fold[name]["variants"][view]["p_test"]) >= row["threshold"])
    y, decide = np.concatenate(y_all), np.concatenate(decide_all)
    sens, spec = float(decide[y == 1].mean()), float((~decide[y == 0]).mean())
    return {"choices": choices, "per_domain": per_domain, "pooled_balanced_accuracy": (sens + spec) / 2,
            "pooled_sensitivity": sens, "pooled_specificity": spec}


def read_fold_cache(path: Path) -> dict[str, Any]:
    """A fold's ``transfer.json``; one that cannot be read is named, with the way out."""
    try:
        cached = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SystemExit(f"error: {path}: unreadable ({type(exc).__name__}); rerun with --recompute") from None
    if not isinstance(cached, dict) or not isinstance(cached.get("variants"), dict):
        raise SystemExit(f"error: {path}: not a fold analysis (no 'variants'); rerun with --recompute")
    return cached


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="the --work folder of benchmarks/amibr_lodo.py")
    parser.add_argument("--preset", default="full-cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--name", default="lodo_transfer")
    parser.add_argument("--no-onnx", action="store_true", help="score in eager PyTorch only")
    parser.add_argument("--limit", type=int, default=0,
                        help="score only this many validation and held-out figures per fold (a quick check of "
                        "the script; results are then not comparable)")
    parser.add_argument("--variants", nargs="+", choices=[v[0] for v in VARIANTS], default=None,
                        help="score only these ways (default: all); a fold analysed before keeps its other "
                        "ways, and any way whose scores it stored is not scored again")
    parser.add_argument("--recompute", action="store_true",
                        help="analyse every fold again (default: reuse each fold's transfer.json)")
    args = parser.parse_args()
    if args.limit < 0:
        parser.error(f"--limit must be 0 or more, got {args.limit}")

    from mitotype.evaluation.splits import validation_split
    from mitotype.experiments.cv import fold_model_dir, make_folds
    from mitotype.ioutils import write_json_atomic
    from mitotype.models.artifact import load_model_artifact
    from mitotype.models.onnx_runtime import onnx_available
    from mitotype.training.config import load_config
    from mitotype.training.inputs import load_figures

    finished_lodo_folds(args.work)  # before the data is read
    overrides = [f"data.path={shared_data_dir() / 'amibr'}", f"seed={args.seed}", *args.overrides]
    config = load_config(preset=args.preset, overrides=overrides)
    figures = load_figures(config.data.path, cache_dir=args.work / "cache")
    records = figures.records
    labels = np.array([r.label for r in records])
    domains = np.array([r.domain for r in records])
    onnx_dir = None if args.no_onnx or not onnx_available() else Path(tempfile.mkdtemp(prefix="lodo-transfer-"))
    start = time.perf_counter()
    per_fold: dict[str, Any] = {}
    for fold in make_folds(records, "lodo", 5, config.seed):
        model_dir = fold_model_dir(args.work / "cv", fold.name)
        if not (model_dir.parent / "predictions.json").is_file():  # run_cv's mark of a finished fold
            print(f"{fold.name}: not finished in {model_dir.parent}, skipped", flush=True)
            continue
        cache_file = model_dir.parent / "transfer.json"
        fresh = args.recompute or args.limit or not cache_file.is_file()
        cached = None if fresh else read_fold_cache(cache_file)
        _, val_idx = validation_split(records, fold.train_idx, fraction=config.data.val_fraction, seed=config.seed)
        test_idx = np.asarray(fold.test_idx)
        if args.limit:
            pick = np.random.default_rng(0)
            val_idx = np.sort(pick.choice(val_idx, min(args.limit, len(val_idx)), replace=False))
            test_idx = np.sort(pick.choice(test_idx, min(args.limit, len(test_idx)), replace=False))
        wanted = [v for v in VARIANTS if args.variants is None or v[0] in args.variants]
        if cached is not None and args.variants is None and not any("p_val" in v for v in cached["variants"].values()):
            per_fold[fold.name] = cached  # analysed before scores were stored: kept as it is
            print(f"{fold.name}: analysed before ({cache_file})", flush=True)
            continue
        model = (load_model_artifact(model_dir, device="cpu").model.eval()
                 if _needs_model(cached, wanted) else None)
        per_fold[fold.name] = _analyse_fold(model, figures, labels, domains, val_idx, test_idx, onnx_dir, fold.name,
                                            wanted, cached)
        if not args.limit:
            write_json_atomic(cache_file, per_fold[fold.name])
    summary = {}
    for key in _common_keys(per_fold):
        view, rule = key.split("|")
        rows = [f["variants"][view]["rules"][rule] for f in per_fold.values()]
        y = np.concatenate([f["y_test"] for f in per_fold.values()])
        decide = np.concatenate([np.asarray(f["variants"][view]["p_test"]) >= r["threshold"]
                                 for f, r in zip(per_fold.values(), rows)])
        sens, spec = float(decide[y == 1].mean()), float((~decide[y == 0]).mean())
        summary[key] = {"pooled_balanced_accuracy": (sens + spec) / 2, "pooled_sensitivity": sens,
                        "pooled_specificity": spec,
                        "min_domain_balanced_accuracy": min(r["balanced_accuracy"] for r in rows),
                        "min_domain_sensitivity": min(r["sensitivity"] for r in rows),
                        "mean_domain_roc_auc": float(np.mean([r["roc_auc"] for r in rows]))}
    per_domain = {name: {"n_test": f["n_test"], "n_pos": f["n_pos"], "seconds": f["seconds"],
                         **{v: {k: x for k, x in d.items() if k not in ("p_test", "p_val")}
                            for v, d in f["variants"].items()}}
                  for name, f in per_fold.items()}
    selected = _selected_by_other_domains(per_fold)
    command = command_line()
    write_result(args.name, command, {"summary": summary, "per_domain": per_domain, "folds": list(per_fold),
                                      "selected_by_other_domains": selected,
                                      "wall_seconds": time.perf_counter() - start},
                 extra={"preset": args.preset, "seed": args.seed, "overrides": args.overrides,
                        "input_size": config.model.input_size, "epochs": config.optim.epochs,
                        "onnx": onnx_dir is not None,
                        "lodo_command": " ".join(["python benchmarks/amibr_lodo.py", f"--preset {args.preset}",
                                                  f"--seed {args.seed}", *(f"--set {o}" for o in args.overrides),
                                                  f"--work {args.work}"])})
    print("| views + BN | threshold | pooled BA | sens | spec | worst domain BA | worst sens | mean AUC |")
    for key, s in summary.items():
        view, rule = key.split("|")
        print(f"| {view} | {rule} | {s['pooled_balanced_accuracy']:.3f} | {s['pooled_sensitivity']:.3f} | "
              f"{s['pooled_specificity']:.3f} | {s['min_domain_balanced_accuracy']:.3f} | "
              f"{s['min_domain_sensitivity']:.3f} | {s['mean_domain_roc_auc']:.3f} |")
    if selected:
        print(f"chosen on the other domains, per held-out domain: {selected['choices']}; pooled balanced accuracy "
              f"{selected['pooled_balanced_accuracy']:.3f}, sensitivity {selected['pooled_sensitivity']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
