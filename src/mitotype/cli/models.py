"""``mitotype models``: list the registered backbones, check weights against them, export ONNX, pack a run."""

from __future__ import annotations

import argparse
import json
import sys

from mitotype.cli.extras import needs_training_extra


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list backbones, check weights, export ONNX, pack a run")
    sub = parser.add_subparsers(dest="models_command", metavar="<subcommand>")
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])

    p_list = sub.add_parser(
        "list", help="registered backbones with input size, normalisation, embedding size"
    )
    p_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p_list.set_defaults(func=cmd_list)
    needs_training_extra(p_list)

    p_check = sub.add_parser(
        "check",
        help="verify that weights load into a backbone (keys, shapes, dtypes); nothing is allocated",
    )
    p_check.add_argument("backbone", help="registry name (see `mitotype models list`) or timm:<architecture>")
    p_check.add_argument(
        "--weights",
        default=None,
        help="file, folder, hf-hub:org/name or org/name (default: the backbone's own source)",
    )
    p_check.add_argument(
        "--no-strict", dest="strict", action="store_false", help="accept missing/unexpected/mis-shaped keys"
    )
    p_check.set_defaults(func=cmd_check)
    needs_training_extra(p_check)

    p_onnx = sub.add_parser(
        "onnx", help="write model.onnx beside trained model(s): predict, evaluate and challenge then run ONNX "
        "Runtime on the CPU (same logits to ~1e-6, about 3x faster; needs the onnx extra)")
    p_onnx.add_argument("model", nargs="+", help="model folder(s) or a cv output folder")
    p_onnx.set_defaults(func=cmd_onnx)
    needs_training_extra(p_onnx)

    p_ship = sub.add_parser(
        "ship", help="pack a fully fine-tuned run as a shipped-style model folder: fp16 tensors, model.json, "
        "config.yaml and a MODEL_CARD.md written from the run (its recipe, kept epoch, thresholds, test figures)")
    p_ship.add_argument("run", help="the trained run folder (a `mitotype train` or `mitotype holdout` run)")
    p_ship.add_argument("--out", required=True, help="the folder to write (it must not hold a model yet)")
    p_ship.add_argument("--name", default=None, help="the model's name on its card (default: the folder's name)")
    p_ship.add_argument("--command", dest="train_command", default=None,
                        help="the command that trained the run, for the card's Reproduce section")
    p_ship.add_argument("--thresholds", default=None, metavar="RESULT",
                        help="a benchmarks/holdout_thresholds.py result for RUN: ship the thresholds "
                        "--threshold-rule chose there for the same weights, instead of the run's own")
    p_ship.add_argument("--threshold-rule", choices=["val-platt", "val-balanced-accuracy"], default="val-platt",
                        help="the rule whose thresholds --thresholds ships (default: val-platt)")
    p_ship.add_argument("--onnx", action="store_true", help="write model.onnx beside it (the onnx extra)")
    p_ship.add_argument("--allow-unfinished", action="store_true",
                        help="pack a run that did not finish (its best epoch so far)")
    p_ship.set_defaults(func=cmd_ship)
    needs_training_extra(p_ship)


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def cmd_list(args: argparse.Namespace) -> int:
    from mitotype.models.registry import count_parameters, list_backbones

    rows = []
    for spec in list_backbones():
        rows.append(
            {
                "name": spec.name,
                "input_size": spec.input_size,
                "mean": list(spec.mean),
                "std": list(spec.std),
                "embed_dim": spec.embed_dim,
                "pooling": spec.pooling,
                "parameters": count_parameters(spec),
                "weights": spec.default_weights or "random",
                "license": spec.license,
                "for_tests": spec.for_tests,
            }
        )
    if args.json:
        from mitotype.models.shipped import list_shipped_models

        shipped = [{"name": m.name, "folder": str(m.folder), "summary": m.summary} for m in list_shipped_models()]
        print(json.dumps({"backbones": rows, "shipped_models": shipped}, indent=2))
        return 0
    header = ("backbone", "input", "mean", "std", "embed", "pooling", "params", "weights")
    table = [header] + [
        (
            r["name"] + (" (test)" if r["for_tests"] else ""),
            str(r["input_size"]),
            _fmt(tuple(r["mean"])),
            _fmt(tuple(r["std"])),
            str(r["embed_dim"]),
            r["pooling"],
            f"{r['parameters']:,}",
            r["weights"],
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print("\nAny timm architecture can be named as timm:<architecture> with --weights.")
    from mitotype.models.shipped import DEFAULT_SHIPPED_MODEL, list_shipped_models

    shipped = list_shipped_models()
    print("\nTrained models shipped with mitotype (`mitotype predict INPUT` uses the default one):")
    for m in shipped:
        default = " [default]" if m.name == DEFAULT_SHIPPED_MODEL else ""
        print(f"  {m.name}{default}  {m.size_bytes / 1e6:.1f} MB  {m.folder / 'MODEL_CARD.md'}")
        print(f"    {m.summary}")
    if not shipped:
        print("  none in this installation")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from mitotype.models.registry import count_parameters, get_backbone_spec
    from mitotype.models.weights import check_weights

    spec = get_backbone_spec(args.backbone)
    report = check_weights(spec, args.weights)
    print(f"parameters (model): {count_parameters(spec):,}")
    for line in report.summary():
        print(line)
    if report.ok:
        print("result: ok, loads strictly")
        return 0
    if not args.strict:
        print(f"result: loads non-strictly ({report.problems()})")
        return 0
    print(
        f"error: {spec.name}: weights do not match {spec.architecture}: {report.problems()} "
        "(--no-strict loads only what matches)",
        file=sys.stderr,
    )
    return 2


def cmd_onnx(args: argparse.Namespace) -> int:
    # start-up time: torch and the exporter load only for this command
    from mitotype.models.artifact import load_model_artifact
    from mitotype.models.onnx_runtime import write_onnx_beside
    from mitotype.models.predict import find_model_dirs

    for model_dir in [d for m in args.model for d in find_model_dirs(m)]:
        path = write_onnx_beside(model_dir, load_model_artifact(model_dir, device="cpu").model)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    # start-up time: torch loads only for this command
    from mitotype.models.artifact import read_artifact_meta
    from mitotype.models.shipped import CARD_FILE, rechosen_thresholds, ship_run
    from mitotype.training.strategies.registry import switched_on

    thresholds = (rechosen_thresholds(args.thresholds, args.run, args.threshold_rule) if args.thresholds else None)
    strategies = switched_on(read_artifact_meta(args.run)["config"].get("strategies", {}))
    dest, notes = ship_run(args.run, args.out, name=args.name, thresholds=thresholds, strategies=strategies,
                           command=args.train_command, allow_unfinished=args.allow_unfinished)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.onnx:
        from mitotype.models.artifact import load_model_artifact
        from mitotype.models.onnx_runtime import write_onnx_beside

        write_onnx_beside(dest, load_model_artifact(dest, device="cpu").model)
    print(f"packed {args.run} -> {dest} (card: {dest / CARD_FILE})")
    return 0
