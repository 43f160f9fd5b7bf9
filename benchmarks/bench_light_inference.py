"""The base install (ONNX Runtime, no torch) against the PyTorch path, as whole commands in fresh processes.

What a user waits for and what the machine gives up, Python start, imports and model loading included, each
command in a fresh process (wall seconds and peak resident memory from the kernel's accounting of that child):

* ``mitotype challenge`` on the real challenge stack (16 figures, 8-view TTA, the shipped model): the light
  path (``--light-python``: a fresh base-install venv, which has no torch at all) against the torch path of
  the same code (``--runtime torch``) and, with ``--baseline-commit``, the code of that commit (before the
  light path existed: torch imported, the graph run behind the PyTorch model's interface);
* ``mitotype predict`` on a folder of 1,000 real AMi-Br figures (empty patch cache: a new user's first run):
  figures/s including start-up, light against the baseline commit;
* the base install's size on disk: the venv, plus the package's own files (the source and the shipped model,
  which an editable install leaves in the checkout), and whether torch is importable there.

Contenders are alternated in rotated rounds (a busy machine shifts them alike); p of the light and the
baseline paths are compared. Targets (issue 40): stack <= 1.2 s and <= 400 MB, folder >= 150 figures/s,
install <= 300 MB. Writes ``benchmarks/results/light_inference.json``.

Run: ``python3 -m venv /tmp/lightvenv && /tmp/lightvenv/bin/pip install -e .`` then
``python benchmarks/bench_light_inference.py --light-python /tmp/lightvenv/bin/python --baseline-commit COMMIT``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    REPO_ROOT,
    alternate,
    command_line,
    load_average,
    median_ratio,
    run_script,
    shared_data_dir,
    write_result,
)

TARGETS = {"stack_wall_s": 1.2, "stack_peak_rss_mb": 400.0, "folder_figures_per_s": 150.0, "install_mb": 300.0}
STACK_INPUT = Path("midog25_t2_stack/input")
OUTPUT_NAME = "multiple-mitotic-figure-classification.json"


_LAUNCHER = """
import json, os, sys, time
cmd, err = json.loads(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
pid = os.posix_spawnp(cmd[0], cmd, os.environ, file_actions=[
    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
    (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"wall_s": time.perf_counter() - start, "maxrss_kib": usage.ru_maxrss,
                  "cpu_s": usage.ru_utime + usage.ru_stime, "code": os.waitstatus_to_exitcode(status)}))
"""
"""Spawns the measured command and reports its rusage. A child's peak RSS counts the memory of the process that
forked it (held until its exec), so the command is started from this small launcher (about 10 MB), not from the
benchmark or a test run holding gigabytes."""


def run_measured(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one command in a fresh process; a non-zero exit fails loudly."""
    with tempfile.TemporaryDirectory() as tmp:
        err = Path(tmp) / "stderr"
        proc = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, json.dumps(cmd), str(err)], env=env,
                              capture_output=True, text=True, check=True)
        usage = json.loads(proc.stdout)
        if usage["code"]:
            raise SystemExit(f"error: {' '.join(cmd)} exited {usage['code']}: {err.read_text()[-500:]}")
    return {"wall_s": usage["wall_s"], "peak_rss_mb": usage["maxrss_kib"] / 1024,  # KiB on Linux
            "cpu_s": usage["cpu_s"]}  # CPU time: what a busy machine does not inflate


def summarise(runs: list[dict[str, float]]) -> dict[str, Any]:
    walls, rss, cpu = [r["wall_s"] for r in runs], [r["peak_rss_mb"] for r in runs], [r["cpu_s"] for r in runs]
    return {"wall_s": [round(w, 3) for w in walls], "peak_rss_mb": [round(m, 1) for m in rss],
            "cpu_s": [round(c, 3) for c in cpu], "median_wall_s": round(statistics.median(walls), 3),
            "median_peak_rss_mb": round(statistics.median(rss), 1), "median_cpu_s": round(statistics.median(cpu), 3)}


def dir_mb(path: Path) -> float:
    """Bytes on disk under ``path`` (links not followed), in MB (1e6)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            file = Path(root) / name
            if not file.is_symlink():
                total += file.stat().st_blocks * 512
    return round(total / 1e6, 1)


def venv_report(python: Path) -> dict[str, Any]:
    """Size of the venv holding ``python`` and of the package files it uses, and what it has installed."""
    probe = ("import importlib.metadata as m, importlib.util as u, json, mitotype; print(json.dumps({"
             "'torch': u.find_spec('torch') is not None, 'sklearn': u.find_spec('sklearn') is not None, "
             "'package': mitotype.__file__, 'distributions': sorted(f\"{d.metadata['Name']}=={d.version}\" "
             "for d in m.distributions())}))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    info = json.loads(subprocess.run([str(python), "-c", probe], env=env, capture_output=True, text=True,
                                     check=True).stdout)
    venv = Path(python).parent.parent
    package = Path(info["package"]).parent
    venv_mb, package_mb = dir_mb(venv), dir_mb(package)
    return {"venv": str(venv), "venv_mb": venv_mb, "package_files_mb": package_mb,
            "total_mb": round(venv_mb + package_mb, 1), "torch_importable": info["torch"],
            "sklearn_importable": info["sklearn"], "distributions": info["distributions"]}


def baseline_tree(commit: str, into: Path) -> Path:
    """The ``src`` folder of ``commit`` written out with ``git archive`` (the repository itself is not touched)."""
    archive = subprocess.run(["git", "archive", commit, "src"], cwd=REPO_ROOT, capture_output=True, check=True)
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def read_p(path: Path) -> np.ndarray:
    """p(atypical) from a predict CSV (``p_atypical``)."""
    with path.open() as fh:
        return np.array([float(row["p_atypical"]) for row in csv.DictReader(fh)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--light-python", type=Path, default=None,
                        help="python of a fresh base-install venv (default: this python, torch installed but unused)")
    parser.add_argument("--baseline-commit", default=None,
                        help="also run the code of this commit (today's path before the light one), e.g. main")
    parser.add_argument("--data", type=Path, default=None, help="shared data folder (default: MITOTYPE_SHARED_DATA)")
    parser.add_argument("--folder-figures", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-torch-runtime", action="store_true", help="leave out the --runtime torch stack runs")
    args = parser.parse_args(argv)
    data = args.data or shared_data_dir()
    stack_input = data / STACK_INPUT
    if not stack_input.is_dir() or not (data / "amibr" / "patches").is_dir():
        raise SystemExit(f"error: {data}: no {STACK_INPUT} or amibr/patches (set MITOTYPE_SHARED_DATA)")
    light_python = args.light_python or Path(sys.executable)
    dev_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    light_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} if args.light_python else dev_env
    loads = [load_average()]
    with tempfile.TemporaryDirectory(prefix="mitotype-light-") as tmp:
        tmp_path = Path(tmp)
        folder = tmp_path / "figures"
        folder.mkdir()
        pngs = sorted((data / "amibr" / "patches").glob("*/*.png"), key=lambda p: p.name)[: args.folder_figures]
        for png in pngs:
            shutil.copy(png, folder / png.name)
        contenders: dict[str, tuple[str, dict[str, str], list[str]]] = {
            "light": (str(light_python), light_env, [])}
        if args.baseline_commit:
            src = baseline_tree(args.baseline_commit, tmp_path / "baseline")
            contenders["baseline"] = (sys.executable, {**os.environ, "PYTHONPATH": str(src)}, [])
        if not args.skip_torch_runtime:
            contenders["torch_runtime"] = (sys.executable, dev_env, ["--runtime", "torch"])
        counter = iter(range(10**6))

        def stack_run(name: str) -> Callable[[], dict[str, float]]:
            python, env, extra = contenders[name]

            def run() -> dict[str, float]:
                out = tmp_path / "stack" / f"{name}-{next(counter)}"
                result = run_measured([python, "-m", "mitotype", "challenge", "--input-dir", str(stack_input),
                                       "--output-dir", str(out), "--model-dir", "shipped", "--tta", "on", *extra],
                                      {**env, "MITOTYPE_CACHE": str(tmp_path / "cache-stack")})
                result["classes"] = [e["class"] for e in json.loads((out / OUTPUT_NAME).read_text())]
                return result

            return run

        def folder_run(name: str) -> Callable[[], dict[str, float]]:
            python, env, _ = contenders[name]

            def run() -> dict[str, float]:
                i = next(counter)
                out = tmp_path / f"folder-{name}-{i}.csv"
                result = run_measured([python, "-m", "mitotype", "predict", str(folder), "--out", str(out)],
                                      {**env, "MITOTYPE_CACHE": str(tmp_path / f"cache-folder-{name}-{i}")})
                result["p"] = read_p(out).tolist()
                return result

            return run

        print(f"stack: {', '.join(contenders)}; {args.rounds} rounds", flush=True)
        stack = alternate({name: stack_run(name) for name in contenders}, args.rounds)
        loads.append(load_average())
        folder_names = [n for n in contenders if n != "torch_runtime"]
        print(f"folder of {len(pngs)} figures: {', '.join(folder_names)}", flush=True)
        folder_runs = alternate({name: folder_run(name) for name in folder_names}, args.rounds)
        loads.append(load_average())

        figures: dict[str, Any] = {"targets": TARGETS, "load_average_1min": loads}
        figures["stack_16_tta"] = {name: summarise(runs) for name, runs in stack.items()}
        light_stack = figures["stack_16_tta"]["light"]
        figures["stack_16_tta"]["targets_met"] = {
            "wall_s": light_stack["median_wall_s"] <= TARGETS["stack_wall_s"],
            "peak_rss_mb": light_stack["median_peak_rss_mb"] <= TARGETS["stack_peak_rss_mb"]}
        figures["folder"] = {"figures": len(pngs)}
        for name, runs in folder_runs.items():
            entry = summarise(runs)
            entry["figures_per_s"] = [round(len(pngs) / r["wall_s"], 1) for r in runs]
            entry["median_figures_per_s"] = round(len(pngs) / entry["median_wall_s"], 1)
            figures["folder"][name] = entry
        figures["folder"]["target_met"] = figures["folder"]["light"]["median_figures_per_s"] >= TARGETS[
            "folder_figures_per_s"]
        for name in contenders:
            if name != "light":
                figures["stack_16_tta"][f"wall_ratio_{name}_to_light"] = median_ratio(
                    [r["wall_s"] for r in stack[name]], [r["wall_s"] for r in stack["light"]])
                figures["stack_16_tta"][f"rss_ratio_{name}_to_light"] = median_ratio(
                    [r["peak_rss_mb"] for r in stack[name]], [r["peak_rss_mb"] for r in stack["light"]])
        if "baseline" in folder_runs:
            figures["folder"]["speedup_light_vs_baseline"] = median_ratio(
                [r["wall_s"] for r in folder_runs["baseline"]], [r["wall_s"] for r in folder_runs["light"]])
            light_p, base_p = np.array(folder_runs["light"][0]["p"]), np.array(folder_runs["baseline"][0]["p"])
            figures["agreement_with_baseline"] = {
                "folder_max_abs_p_difference": float(np.abs(light_p - base_p).max()),
                "stack_classes_equal": stack["light"][0]["classes"] == stack["baseline"][0]["classes"]}
        install = venv_report(light_python)
        install["target_met"] = install["total_mb"] <= TARGETS["install_mb"]
        figures["light_install"] = install
    print(json.dumps({k: v for k, v in figures.items() if k != "light_install"}, indent=1))
    print(json.dumps({k: v for k, v in install.items() if k != "distributions"}))
    path = write_result("light_inference", command_line(), figures,
                        extra={"baseline_commit": args.baseline_commit, "light_python": str(light_python)})
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
