"""Where a CPU training step of the stand-in backbone spends its time: the limit behind ``cpu_training.json``.

Builds the ``full-cpu`` model (EfficientNet-Lite0, full fine-tuning, every head) at ``--size`` px and runs
forward, backward and an AdamW step on a batch of random figures under ``torch.profiler``, for each
numeric path (fp32, channels-last, bf16 autocast), with the retained heap the trainer uses
(``MITOTYPE_RETAIN_MEMORY=0`` profiles glibc's own allocator instead). Operators are grouped by kind
(convolution forward and backward, depthwise counted apart; batch norm; activations; copies and fills; the
rest) so the share that a faster kernel or a fused graph could remove is visible. The trainer itself runs at 0.99-1.00
of this model-only speed (``input_pipeline.json``), so these shares are those of a real epoch.
Writes ``benchmarks/results/cpu_training_profile.json``.

Run: ``python benchmarks/profile_cpu_training.py`` (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, run_script, set_omp_wait_policy, write_result

GROUPS = {
    "convolution_backward": ("aten::convolution_backward",),
    "convolution_forward": ("aten::mkldnn_convolution", "aten::_convolution", "aten::thnn_conv2d",
                            "aten::_slow_conv2d_forward", "aten::_mkldnn_convolution_depthwise"),
    "batch_norm_backward": ("aten::native_batch_norm_backward",),
    "batch_norm_forward": ("aten::native_batch_norm", "aten::_native_batch_norm_legit"),
    "activation": ("aten::hardtanh", "aten::hardtanh_backward", "aten::clamp", "aten::clamp_", "aten::relu",
                   "aten::threshold_backward"),
    "copy_fill_pad": ("aten::copy_", "aten::fill_", "aten::zero_", "aten::constant_pad_nd", "aten::cat"),
}
PATHS = {"eager_fp32": {}, "channels_last": {"channels_last": True}, "bf16_autocast": {"bf16": True}}


def _group(name: str) -> str:
    for group, names in GROUPS.items():
        if name in names:
            return group
    return "other"


def profile_path(size: int, batch: int, steps: int, channels_last: bool = False, bf16: bool = False) -> dict[str, Any]:
    """Step time and the self-CPU share of each operator group for one numeric path."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from mitotype.models.classifier import build_classifier
    from mitotype.training.config import load_config

    config = load_config(preset="full-cpu", overrides=[f"model.input_size={size}"])
    model = build_classifier(config.model, num_domains=3).train()
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 2, (batch,)).float()
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out.logits.float().reshape(-1), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    for _ in range(2):  # warm-up: oneDNN primitive caches, allocator
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    by_group: dict[str, float] = defaultdict(float)
    depthwise_backward = 0.0
    total = 0.0
    for event in prof.key_averages(group_by_input_shape=True):
        t = event.self_cpu_time_total
        total += t
        by_group[_group(event.key)] += t
        shapes = event.input_shapes or []
        if event.key == "aten::convolution_backward" and len(shapes) > 2 and len(shapes[2]) == 4 and shapes[2][1] == 1:
            depthwise_backward += t  # weight (C, 1, k, k): a depthwise convolution
    top = sorted(((e.key, e.self_cpu_time_total) for e in prof.key_averages()), key=lambda kv: -kv[1])[:10]
    return {
        "step_seconds": round(seconds, 4),
        "figures_per_second": round(batch / seconds, 2),
        "share": {g: round(t / total, 4) for g, t in sorted(by_group.items(), key=lambda kv: -kv[1])},
        "depthwise_share_of_convolution_backward":
            round(depthwise_backward / max(by_group["convolution_backward"], 1e-9), 4),
        "top_operators_ms": {k: round(t / 1000, 1) for k, t in top},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32, help="the full-cpu preset's batch size")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per path (after 2 warm-up steps)")
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS))
    args = parser.parse_args(argv)
    policy = set_omp_wait_policy("passive")
    import torch

    from mitotype.models.allocator import retain_freed_memory

    figures: dict[str, Any] = {"input_size": args.size, "batch": args.batch, "omp_wait_policy": policy,
                               "torch_threads": torch.get_num_threads(), "retained_heap": retain_freed_memory(),
                               "paths": {}}
    for name in args.paths:
        figures["paths"][name] = profile_path(args.size, args.batch, args.steps, **PATHS[name])
        row = figures["paths"][name]
        print(f"{name}: {row['figures_per_second']} figures/s; " +
              ", ".join(f"{g} {s:.0%}" for g, s in row["share"].items()), flush=True)
    write_result("cpu_training_profile", command_line(), figures)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
