"""The checkpointer: the resume state it writes is read back only under the same fingerprint, puts the model,
optimiser, schedule and stateful parts back, keeps run.json's epoch count, and reads the resume files that
versions before the trainer was split wrote (hard mining's difficulty stored twice)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mitotype.errors import MitotypeError
from mitotype.training.checkpointer import STATE_FILE, Checkpointer
from mitotype.training.strategies.base import RunContext
from mitotype.training.strategies.hard_mining import HardMining, HardMiningSettings


class Tiny(torch.nn.Linear):
    """A model with the trainable-tensor interface of MitoClassifier."""

    def __init__(self) -> None:
        super().__init__(3, 1)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.state_dict())

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(state)


class Counter:
    """A stateful part (a strategy, the weight average)."""

    def __init__(self, n: int = 0) -> None:
        self.n = n

    def state_dict(self) -> dict[str, int]:
        return {"n": self.n}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.n = int(state["n"])


def parts(seed: int):
    torch.manual_seed(seed)
    model = Tiny()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


SELECTION = {"best": {"epoch": 1, "balanced_accuracy": np.float64(0.7)}, "history": [{"epoch": 1}], "bad_epochs": 0}


def test_a_state_round_trips_and_counts_the_epochs_in_run_json(tmp_path) -> None:
    model, optimizer, scheduler = parts(0)
    saver = Checkpointer(tmp_path / "run", fingerprint="abc")
    with saver.locked(epochs=3, resume=False):
        saver.end_epoch(model, optimizer, scheduler, {"counter": Counter(5)}, epoch=0, selection=SELECTION,
                        stopped=False)
        assert json.loads((tmp_path / "run" / "run.json").read_text())["epochs_done"] == 1
    state = Checkpointer(tmp_path / "run", fingerprint="abc").read()
    assert state is not None and state["best"]["balanced_accuracy"] == 0.7 and state["epoch"] == 0

    other, other_opt, other_sched = parts(1)
    counter = Counter()
    loader = Checkpointer(tmp_path / "run", fingerprint="abc")
    with loader.locked(epochs=3, resume=True):
        loader.restore(state, other, other_opt, other_sched, {"counter": counter})
    assert counter.n == 5
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    assert other_sched.last_epoch == scheduler.last_epoch
    assert json.loads((tmp_path / "run" / "run.json").read_text())["epochs_done"] == 1


def test_another_fingerprint_is_refused_and_no_state_is_none(tmp_path) -> None:
    assert Checkpointer(tmp_path, fingerprint="abc").read() is None
    model, optimizer, scheduler = parts(0)
    Checkpointer(tmp_path, fingerprint="abc").end_epoch(model, optimizer, scheduler, {}, epoch=0,
                                                        selection=SELECTION, stopped=False)
    before = (tmp_path / STATE_FILE).read_bytes()
    with pytest.raises(MitotypeError, match="another configuration or other figures"):
        Checkpointer(tmp_path, fingerprint="xyz").read()
    assert (tmp_path / STATE_FILE).read_bytes() == before


def test_a_process_that_does_not_write_leaves_the_folder_alone(tmp_path) -> None:
    model, optimizer, scheduler = parts(0)
    quiet = Checkpointer(tmp_path / "run", fingerprint="abc", enabled=False)
    with quiet.locked(epochs=1, resume=False):
        quiet.end_epoch(model, optimizer, scheduler, {}, epoch=0, selection=SELECTION, stopped=True)
        quiet.save_config(None)  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists()


def test_a_state_written_before_the_split_still_resumes_hard_mining(tmp_path) -> None:
    """Earlier versions stored hard mining's difficulty twice: under ``miner`` and as ``difficulty`` at the top.
    The strategy keeps it now; the top-level copy of an older file is ignored, and ``miner`` restores it."""
    context = RunContext(labels=np.array([0, 1, 0, 1]), targets=np.zeros(4, np.float32), soft_targets=False,
                     domains=np.zeros(4, np.int64), domain_names=["a"], train_idx=np.arange(4),
                     device=torch.device("cpu"), world=1, epochs=3, log=lambda _m: None,
                     predict=lambda idx: np.array([0.9, 0.9, 0.1, 0.2])[idx],
                     sampling_weights=lambda: np.ones(4), difficulty=lambda: None)
    before = HardMining(HardMiningSettings(every_n_epochs=1), context)
    before.setup(Tiny())
    assert before.difficulty() is None  # no round yet
    before.on_epoch_start(1)
    difficulty = before.difficulty()
    assert difficulty is not None and difficulty[0] > 0 and difficulty[1] == 0

    model, optimizer, scheduler = parts(0)
    saver = Checkpointer(tmp_path, fingerprint="abc")
    saver.end_epoch(model, optimizer, scheduler, {"miner": before}, epoch=1, selection=SELECTION, stopped=False)
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert "difficulty" not in state  # kept once, by the strategy
    state["difficulty"] = torch.from_numpy(difficulty)  # as an earlier version wrote it
    torch.save(state, tmp_path / STATE_FILE)

    after = HardMining(HardMiningSettings(every_n_epochs=1), context)
    after.setup(Tiny())
    restored = saver.read()
    assert restored is not None
    saver.restore(restored, *parts(1), {"miner": after})
    np.testing.assert_array_equal(after.difficulty(), difficulty)
