"""``mitotype score``: challenge outputs scored as the MIDOG 2025 Track 2 evaluator scores them (re-implemented)."""

from __future__ import annotations

import argparse
from typing import Any

from mitotype.serving.outputs import CONFIDENCE_READINGS


def register(subparsers: Any) -> None:
    """Add ``score`` to the top-level parser."""
    _register_score(subparsers)


def _register_score(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "score",
        help="score challenge outputs against a ground truth, as the MIDOG 2025 Track 2 evaluator does",
        description="Score container outputs (multiple-mitotic-figure-classification.json per stack) "
        "against ground_truth.json: pooled balanced accuracy (the ranking metric), sensitivity, "
        "specificity, accuracy and ROC AUC, overall and per tumour domain, with the key names of the "
        "evaluator's metrics.json. By default 'confidence' is read as the final official evaluator reads it: "
        "p(atypical) for every figure, taken as the ROC score as it stands. Malformed outputs are rejected "
        "as the platform rejects them (exit status 2).",
    )
    p.add_argument("--ground-truth", required=True, metavar="GT.json", help="ground_truth.json of the stacks")
    p.add_argument(
        "--predictions",
        required=True,
        metavar="DIR_OR_JSON",
        help="the platform's predictions.json (outputs at <its folder>/<pk>/output/...), a folder "
        "holding it, or a folder of <image stem>.json outputs",
    )
    p.add_argument("--json", metavar="OUT.json", help="also write the metrics as JSON (atomically)")
    p.add_argument(
        "--confidence",
        choices=CONFIDENCE_READINGS,
        default=CONFIDENCE_READINGS[0],
        help="how to read 'confidence' for the ROC AUC: 'p-atypical' (default; p(atypical) for every figure, "
        "the final official evaluator's reading and what `mitotype challenge` writes) or 'predicted-class' "
        "(the probability of the predicted class, rebuilt as confidence if class is atypical else "
        "1 - confidence: the reading of the superseded draft evaluator, for outputs of tools that followed it)",
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="score only the stacks that have a prediction instead of failing",
    )
    p.set_defaults(func=_run_score)


def _run_score(args: argparse.Namespace) -> int:
    from mitotype.ioutils import write_json_atomic
    from mitotype.paths import ensure_output_file
    from mitotype.serving.score import check_metrics_path, format_scores, score_files

    if args.json:  # checked before scoring: never onto the ground truth or an output being scored
        ensure_output_file(args.json, (), (args.ground_truth, args.predictions))
        check_metrics_path(args.json, args.predictions)
    result = score_files(args.ground_truth, args.predictions, args.confidence, args.allow_missing)
    print(format_scores(result))
    if args.json:
        path = write_json_atomic(args.json, result)
        print(f"metrics written to {path}")
    return 0
