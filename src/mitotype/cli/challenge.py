"""``mitotype challenge``: the MIDOG 2025 Track 2 container entry point (/input -> /output)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mitotype.cli.options import add_allow_unfinished, add_runtime, unfinished_notes
from mitotype.serving.outputs import CONFIDENCE_CONTRACT


def run_challenge_command(args: argparse.Namespace) -> int:
    from mitotype.serving.challenge import ChallengePaths, model_dir_from, run_challenge

    paths = ChallengePaths.from_env()
    if args.input_dir:
        paths.input_dir = Path(args.input_dir)
    if args.output_dir:
        paths.output_dir = Path(args.output_dir)
    if args.model_dir:
        paths.model_dirs = [model_dir_from(args.model_dir)]
    out = run_challenge(paths, device=args.device, tta=None if args.tta is None else args.tta == "on",
                        runtime=args.runtime, adapt_bn=args.adapt_bn == "stack",
                        allow_unfinished=args.allow_unfinished, warn=lambda note: print(f"warning: {note}"))
    if args.allow_unfinished:
        from mitotype.models.predict import find_model_dirs
        from mitotype.serving.challenge import find_model_root

        unfinished_notes(find_model_dirs(find_model_root(paths.model_dirs)), True)
    print(f"wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "challenge", help="the MIDOG 2025 Track 2 container entry point (/input -> /output)",
        description="Reads the one TIFF stack in <input>/images/stacked-histopathology-roi-cropouts/ and "
        "writes <output>/multiple-mitotic-figure-classification.json: per page {class, confidence}, where class "
        "follows the model's stored threshold and " + CONFIDENCE_CONTRACT + ". "
        "The model comes from /opt/ml/model (then /opt/app/model). Env overrides: MITOTYPE_INPUT_DIR, "
        "MITOTYPE_OUTPUT_DIR, MITOTYPE_MODEL_DIR (a folder, or 'shipped' for the model that ships with mitotype).")
    p.add_argument("--input-dir", help="default /input")
    p.add_argument("--output-dir", help="default /output")
    p.add_argument("--model-dir", help="default /opt/ml/model, then /opt/app/model; 'shipped' = the model "
                   "that ships with mitotype")
    p.add_argument("--tta", choices=["on", "off"], help="override the exported model's TTA setting")
    p.add_argument("--adapt-bn", choices=("off", "stack"), default="off",
                   help="re-estimate BatchNorm statistics on the input stack's own figures (AdaBN, no labels); "
                   "not advised: it moves decisions with the stack's share of atypical figures (docs/results.md, "
                   "'Prevalence shift')")
    p.add_argument("--device", default="auto")
    add_runtime(p)
    add_allow_unfinished(p)
    p.set_defaults(func=run_challenge_command)
