"""``mitotype export``: trained model(s) packed into the challenge's model tarball."""

from __future__ import annotations

import argparse
from pathlib import Path

from mitotype.cli.extras import needs_training_extra
from mitotype.cli.options import add_allow_unfinished, unfinished_notes
from mitotype.errors import MitotypeError


def run_export(args: argparse.Namespace) -> int:
    from mitotype.paths import ensure_output_file
    from mitotype.serving.export import export_model

    if not str(args.out).endswith((".tar.gz", ".tgz")):
        raise MitotypeError(f"{args.out}: the platform expects a .tar.gz model tarball")
    ensure_output_file(args.out, (".tar.gz", ".tgz"))
    manifest = export_model(args.model, args.out, include_base=args.include_base, tta=not args.no_tta,
                            allow_unfinished=args.allow_unfinished, onnx=args.onnx)
    unfinished_notes([Path(s) for s in manifest["sources"]], args.allow_unfinished)
    # the threshold the container applies: the 8-view TTA one when TTA is on
    used = manifest["threshold_tta"] if manifest["tta"] else manifest["threshold"]
    print(f"packed {len(manifest['members'])} model(s), threshold {used:.3f} "
          f"({'8-view TTA' if manifest['tta'] else 'single view'}), "
          f"TTA {'on' if manifest['tta'] else 'off'}, base weights: {manifest['base_weights'] or 'built in'}, "
          f"estimated GPU memory {manifest['estimated_gpu_gb']} GB{', ONNX graphs for the CPU' if args.onnx else ''}"
          f" -> {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="pack trained model(s) into the challenge's model tarball",
        description="Packs adapters, heads, configuration and threshold (and with --include-base the "
        "backbone weights) into a .tar.gz that the platform unpacks into /opt/ml/model. Refuses a model "
        "that needs more than the platform's 16 GB of GPU memory at batch 16.")
    p.add_argument("--model", nargs="+", required=True, help="model folder(s) or a cv output folder")
    p.add_argument("--out", required=True, type=Path, help="model tarball (.tar.gz)")
    p.add_argument("--include-base", action="store_true", help="pack the base backbone weights too")
    p.add_argument("--no-tta", action="store_true", help="disable TTA in the container")
    p.add_argument("--onnx", action="store_true",
                   help="pack each member's ONNX graph too: the container then runs ONNX Runtime on a CPU-only "
                   "machine (about 3x faster than PyTorch there; needs the onnx extra)")
    add_allow_unfinished(p)
    p.set_defaults(func=run_export)
    needs_training_extra(p)
