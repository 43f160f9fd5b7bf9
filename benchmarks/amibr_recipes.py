"""Accuracy on real data: the AMi-Br benchmark split, the full strategy set against the plain recipe,
and the leave-one-strategy-out ablation on the same split.

The hold-out experiment of :mod:`mitotype.experiments.holdout` (also ``mitotype holdout``) on
``benchmark_split`` train -> test (826 figures, no slide shared with training). Around it, what a
benchmark needs: one subprocess per run (its peak memory is its own), several runs at once (``--jobs``), a
time budget, and ``benchmarks/results/<name>.json``, appended after every run (finished runs are skipped).

    python benchmarks/amibr_recipes.py --recipes plain full-cpu --seeds 0 1 2
    python benchmarks/amibr_recipes.py --ablate full-cpu --seeds 0      # full-cpu minus each strategy
    python benchmarks/amibr_recipes.py --rescore                        # score saved runs again (no training)
    python benchmarks/amibr_recipes.py --collect --work DIR             # add finished runs a stopped sweep lost
    python benchmarks/amibr_recipes.py --name amibr_recipes_gpu --set optim.device=cuda --jobs 6 \
        --seeds 0 1 2 3 4 --budget 420                                  # on a GPU: several runs at once

A recipe is a preset name, or ``<preset>-no_<strategy>``: the preset with one strategy of the registry
switched off (what ``--ablate`` runs), optionally followed by ``+<variant>`` (``+last`` keeps the last
epoch instead of the best on validation).
``--set KEY=VALUE`` applies a config override to every run (recorded with the results). The tables
(seed means, the recipe chosen on validation, seed ensembles, the seed-paired ablation with its slide
bootstrap) are :func:`mitotype.experiments.holdout.tables`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, combined_command, command_line, run_child, run_script, shared_data_dir, write_result
from mitotype.experiments import holdout
from mitotype.ioutils import write_json_atomic
from mitotype.training.strategies.registry import strategy_switches

PUBLISHED = {
    "EfficientNetV2-M": 0.747, "ViT-L/16": 0.790, "Swin-B": 0.805, "H-optimus-0 + LoRA": 0.785,
    "Virchow2 + LoRA": 0.814, "H-optimus-0 linear probe": 0.632,
}


def recipe_config(recipe: str, seed: int, epochs: int | None, extra: list[str] | None = None) -> Any:
    """The config of ``recipe`` (``<preset>[-no_<strategy>][+<variant>]``) on the shared AMi-Br data."""
    return holdout.recipe_config(recipe, seed, shared_data_dir() / "amibr", epochs, extra)


def child(args: argparse.Namespace, flag: str, recipe: str, seed: int) -> dict[str, Any]:
    """Run ``--train-one`` / ``--score-one`` in a subprocess, its log passed on as it comes; its result, or a
    failure record (``failed``: why) that the results file keeps. ``--jobs N``: 1/N of the CPU threads each."""
    cmd = [sys.executable, __file__, flag, recipe, str(seed), "--work", str(args.work)]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    for item in args.set:
        cmd += ["--set", item]
    env = dict(os.environ)
    if args.jobs > 1:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    return run_child(cmd, env, {"recipe": recipe, "seed": seed, "step": flag.strip("-")})


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=None, help="default: plain full-cpu (none with --ablate)")
    parser.add_argument("--ablate", metavar="PRESET", help="run PRESET minus each strategy (and PRESET)")
    parser.add_argument("--strategies", nargs="+", choices=list(strategy_switches()), default=None,
                        help="with --ablate: which strategies to switch off (default: all on by default)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--ablate-seeds", nargs="+", type=int, default=None,
                        help="seeds of the ablation runs (default: --seeds); they queue after --recipes")
    parser.add_argument("--epochs", type=int, help="override every recipe's epochs (default: the preset's)")
    parser.add_argument("--rescore", action="store_true",
                        help="score the saved runs in the results file again (adds TTA figures), no training")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every run, e.g. optim.device=cuda (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one GPU takes several)")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="start no run after this many seconds (runs in flight finish)")
    parser.add_argument("--collect", action="store_true",
                        help="add finished runs under --work (their scores.json) missing from the results file")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mitotype-amibr-recipes"))
    parser.add_argument("--name", default="amibr_recipes", help="results file name")
    parser.add_argument("--train-one", nargs=2, metavar=("RECIPE", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--score-one", nargs=2, metavar=("RECIPE", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    return args


def one_run(args: argparse.Namespace) -> int:
    """``--train-one`` / ``--score-one``: one run in this (child) process; its record in its scores.json."""
    recipe, seed = (args.train_one or args.score_one)[0], int((args.train_one or args.score_one)[1])
    out = args.work / f"{recipe}-seed{seed}"
    config = recipe_config(recipe, seed, args.epochs if args.train_one else None, args.set)
    split = holdout.holdout_split(config, args.work / "cache", seed)
    if args.train_one:
        run = holdout.train_run(recipe, seed, config, split, out, args.set,
                        log=lambda m: print(f"  [{recipe} seed {seed}] {m}", flush=True))
    else:
        run = holdout.score_run(config, split, out)
    scores = out / "scores.json"  # the run's own record; re-scoring updates it, keeping the training facts
    write_json_atomic(scores, {**(json.loads(scores.read_text()) if scores.is_file() else {}), **run}, indent=1)
    print("RESULT " + json.dumps(run), flush=True)
    return 0


def run_queue(args: argparse.Namespace, queue: list[tuple[str, int]], runs: list[dict],
              save: Callable[[], None], failures: list[dict] | None = None) -> int:
    """Train the queue, ``--jobs`` children at a time; each finished or failed run is saved at once."""
    failures = failures if failures is not None else []
    if args.jobs > 1 and queue:  # the store is built once before the children start, not by each of them
        holdout.holdout_split(recipe_config(queue[0][0], 0, None, args.set), args.work / "cache", 0)
    start, failed = time.monotonic(), 0
    with ThreadPoolExecutor(args.jobs) as pool:
        running: dict[Future, tuple[str, int]] = {}
        while queue or running:
            while queue and len(running) < args.jobs:
                if args.budget is not None and time.monotonic() - start > args.budget:
                    print(f"budget of {args.budget:.0f} s spent: {len(queue)} runs not started", flush=True)
                    queue.clear()
                    break
                recipe, seed = queue.pop(0)
                running[pool.submit(child, args, "--train-one", recipe, seed)] = (recipe, seed)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                recipe, seed = running.pop(future)
                run = future.result()
                failures[:] = [f for f in failures if (f["recipe"], f["seed"]) != (recipe, seed)]
                if "failed" in run:
                    failed += 1
                    failures.append(run)
                    save()
                    print(f"{recipe} seed {seed}: FAILED, {run['failed']}", file=sys.stderr, flush=True)
                    continue
                runs.append(run)
                save()
                print(f"{recipe} seed {seed}: test balanced accuracy {run['test_balanced_accuracy']:.4f} "
                      f"(AUC {run['test_roc_auc']:.4f}, at 0.5: {run['test_balanced_accuracy_at_0.5']:.4f}; "
                      f"TTA {run['test_balanced_accuracy_tta']:.4f}, AUC {run['test_roc_auc_tta']:.4f}) "
                      f"in {run['train_seconds'] / 60:.1f} min", flush=True)
    return 1 if failed else 0


def main() -> int:
    args = parse_args()
    if args.train_one or args.score_one:
        return one_run(args)
    path = RESULTS_DIR / f"{args.name}.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    runs: list[dict] = previous.get("figures", {}).get("runs", [])
    failures: list[dict] = previous.get("figures", {}).get("failed_runs", [])
    clash = None if args.collect or args.rescore else holdout.settings_clash(runs, args.set)
    if clash:
        print(f"{path}: {clash}", file=sys.stderr)
        return 2
    command = command_line()
    extra = {"published_balanced_accuracy": PUBLISHED,
             "data": "AMi-Br benchmark_split train -> test (826 figures: 642 NMF, 184 AMF)"}
    if previous and (runs or args.collect):  # runs came from earlier commands: keep them all on record
        command = combined_command(str(previous.get("command")), command)
    if args.collect and previous:  # the runs were trained by the earlier command, maybe on another machine
        extra["runs_commit"] = previous.get("extra", {}).get("runs_commit", previous.get("commit"))
        extra["runs_machine"] = previous.get("extra", {}).get("runs_machine", previous.get("machine"))

    def save() -> None:
        write_result(args.name, command, {**holdout.tables(runs, args.work), "failed_runs": failures}, extra=extra)

    if args.collect:  # finished runs whose results never reached the file (the sweep was stopped)
        new = holdout.finished_runs(args.work, {(r["recipe"], r["seed"]) for r in runs})
        runs.extend(new)
        save()
        print(f"{len(new)} finished runs added from {args.work}; {len(runs)} in {path.name}")
        return 0
    if args.rescore:
        for run in runs:
            if not (args.work / f"{run['recipe']}-seed{run['seed']}" / "model.safetensors").is_file():
                print(f"{run['recipe']} seed {run['seed']}: no saved model under {args.work}; kept as it was")
                continue
            scores = child(args, "--score-one", run["recipe"], run["seed"])
            if "failed" in scores:
                print(f"{run['recipe']} seed {run['seed']}: rescoring FAILED, {scores['failed']}", file=sys.stderr)
                return 1
            run.update(scores)
            save()
            print(f"{run['recipe']} seed {run['seed']}: rescored, TTA balanced accuracy "
                  f"{run['test_balanced_accuracy_tta']:.4f} (AUC {run['test_roc_auc_tta']:.4f})", flush=True)
        return 0
    return run_queue(args, holdout.build_queue(args, {(r["recipe"], r["seed"]) for r in runs}), runs, save, failures)


if __name__ == "__main__":
    sys.exit(run_script(main))
