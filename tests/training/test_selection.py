"""The selection record: which epoch is kept under each select metric, patience, and its resume state."""

from __future__ import annotations

import pytest

from mitotype.errors import ConfigError
from mitotype.training.selection import Selection

EPOCHS = [
    {"balanced_accuracy": 0.60, "roc_auc": 0.70},
    {"balanced_accuracy": 0.80, "roc_auc": 0.75},  # best balanced accuracy
    {"balanced_accuracy": 0.70, "roc_auc": 0.90},  # best ROC AUC
    {"balanced_accuracy": 0.80, "roc_auc": 0.74},  # ties the best balanced accuracy, loses on AUC
]


@pytest.mark.parametrize(("metric", "kept"), [("balanced_accuracy", 2), ("roc_auc", 3), ("last", 4)])
def test_the_metric_picks_the_epoch_and_ties_go_to_the_other_metric(metric, kept) -> None:
    selection = Selection(metric)
    wins = [selection.offer(val, epoch) for epoch, val in enumerate(EPOCHS)]
    assert selection.best is not None and selection.best["epoch"] == kept
    assert wins[0] is True  # anything beats nothing
    assert selection.best == {**EPOCHS[kept - 1], "epoch": kept}


def test_patience_counts_eligible_epochs_without_improvement() -> None:
    selection = Selection("balanced_accuracy", patience=2)
    flat = {"balanced_accuracy": 0.6, "roc_auc": 0.6}
    assert selection.offer(flat, 0) and not selection.stop
    assert not selection.offer(flat, 1) and not selection.stop and selection.bad_epochs == 1
    assert not selection.offer(flat, 2, eligible=False) and selection.bad_epochs == 1  # averaging not started
    assert not selection.offer(flat, 3) and selection.stop
    assert selection.offer({"balanced_accuracy": 0.7, "roc_auc": 0.6}, 4) and selection.bad_epochs == 0


def test_no_patience_never_stops_and_last_never_runs_out() -> None:
    never = Selection("balanced_accuracy", patience=0)
    last = Selection("last", patience=1)
    for epoch in range(5):
        never.offer({"balanced_accuracy": 0.5}, epoch)
        last.offer({"balanced_accuracy": 0.5 - epoch / 10}, epoch)
    assert not never.stop and not last.stop and last.best["epoch"] == 5


def test_missing_metrics_count_as_zero() -> None:
    selection = Selection("roc_auc")
    selection.offer({"balanced_accuracy": 0.9, "roc_auc": None}, 0)
    assert selection.offer({"balanced_accuracy": 0.5, "roc_auc": 0.1}, 1)


def test_its_state_round_trips_under_the_keys_of_earlier_resume_files() -> None:
    selection = Selection("balanced_accuracy", patience=3)
    for epoch, val in enumerate(EPOCHS):
        selection.offer(val, epoch)
        selection.add({"epoch": epoch + 1, "loss": 1.0 / (epoch + 1)})
    state = selection.state_dict()
    assert set(state) == {"best", "history", "bad_epochs"}
    again = Selection("balanced_accuracy", patience=3)
    again.load_state_dict({**state, "epoch": 3, "fingerprint": "x"})  # a whole resume state works too
    assert (again.best, again.history, again.bad_epochs) == (selection.best, selection.history, 2)


def test_an_unknown_metric_is_refused() -> None:
    with pytest.raises(ConfigError, match="select_metric must be one of"):
        Selection("accuracy")
