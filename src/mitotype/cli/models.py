"""``mitotype models``: list the registered backbones and check weights against them."""

from __future__ import annotations

import argparse
import json
import sys

from mitotype.cli.extras import needs_training_extra


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list backbones, check weights")
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
