"""Strategies as plug-ins: the registry is the one place a strategy is listed, and a new one trains
without touching any other file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from mitotype.settings import Settings, value_range
from mitotype.training.strategies.base import Batch, Strategy
from mitotype.training.strategies.registry import STRATEGIES, strategy_switches


@dataclass
class LogitPenaltySettings(Settings):
    """One more strategy for this test: penalise large logits."""

    enabled: bool = True
    """Add the penalty."""
    weight: float = field(default=0.01, metadata=value_range(0.0, 1.0))
    """Its weight in the loss."""


class LogitPenalty(Strategy):
    """weight * mean(logit^2), with a count of the batches it saw as its resume state."""

    name = "logit_penalty"
    section = "logit_penalty"
    settings_type = LogitPenaltySettings
    summary = "Penalise large logits (a test strategy)."
    state_key = "logit_penalty"
    loss_name = "logit_l2"

    def setup(self, model: torch.nn.Module) -> None:
        self.batches = 0

    def loss_term(self, out: Any, batch: Batch) -> tuple[torch.Tensor, float] | None:
        if not self.settings.enabled:
            return None
        self.batches += 1
        return out.logits.float().pow(2).mean(), self.settings.weight

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches = int(state["batches"])


def test_the_registry_defines_the_config_section_and_the_ablation_switches() -> None:
    from mitotype.training.config import StrategySettings

    assert [f.name for f in fields(StrategySettings)] == [s.section for s in STRATEGIES]
    assert strategy_switches() == {  # the ablation table as it was before strategies became plug-ins
        "mixup": "strategies.mixup.enabled",
        "soft_labels": "strategies.soft_labels.enabled",
        "adaptive_focal": "strategies.focal.adaptive",
        "supcon": "strategies.supcon.enabled",
        "domain_adversarial": "strategies.domain_adversarial.enabled",
        "domain_sampling": "strategies.sampling.enabled",
        "hard_mining": "strategies.hard_mining.enabled",
        "augment": "strategies.augment.enabled",
        "stain_augment": "strategies.stain_augment.enabled",  # off by default
    }


def test_a_new_strategy_is_one_class_and_one_registry_line(tmp_path) -> None:
    """Registered after the configuration module and the experiments were imported (as a plug-in package would
    be), the strategy gets a config block, an ablation switch, a loss column and a place in the resume state."""
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np, torch
        from mitotype.data.synth import write_synthetic
        from mitotype.evaluation.splits import validation_split
        from mitotype.experiments import cv
        from mitotype.training.config import load_config
        from mitotype.training.inputs import load_figures
        from mitotype.training.strategies.registry import register_strategy
        from mitotype.training.trainer import Trainer
        from tests.conftest import TINY_OVERRIDES
        from tests.training.test_strategies import LogitPenalty
        register_strategy(LogitPenalty)  # the one registry line
        STRATEGY_SWITCHES = cv.STRATEGY_SWITCHES

        work = {str(tmp_path)!r}
        write_synthetic(work + "/data", n_per_domain=8, seed=1)
        figures = load_figures(work + "/data", fmt="midog25", domain=["scanner"], cache_dir=work + "/cache")
        config = load_config(overrides=[*TINY_OVERRIDES, "optim.epochs=1", "strategies.logit_penalty.weight=0.5"])
        train_idx, val_idx = validation_split(figures.records, np.arange(len(figures.records)), fraction=0.25,
                                              seed=0)
        result = Trainer(config, figures.records, figures.images, train_idx, val_idx, work + "/run").fit()
        state = torch.load(work + "/run/last_state.pt", weights_only=True)
        print("RESULT " + json.dumps({{"weight": config.strategies.logit_penalty.weight,
                                      "switch": STRATEGY_SWITCHES["logit_penalty"],
                                      "row": result.history[0], "state": state["logit_penalty"]}}))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert out["weight"] == 0.5
    assert out["switch"] == "strategies.logit_penalty.enabled"
    assert out["row"]["logit_l2"] > 0.0 and out["row"]["cls"] > 0.0
    assert out["state"]["batches"] >= 1
