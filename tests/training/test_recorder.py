"""The recorder: one JSON row per epoch in metrics.jsonl, a fresh file unless resuming, one log line, and
nothing at all on a process that does not record."""

from __future__ import annotations

import json

from mitotype.training.recorder import METRICS_FILE, Recorder

VAL = {"balanced_accuracy": 0.75, "threshold": 0.4, "roc_auc": None}


def row(epoch: int) -> dict:
    return {"epoch": epoch, "lr": 1e-3, "loss": 0.5 / epoch, "cls": 0.25, "val_balanced_accuracy": 0.75}


def test_rows_are_appended_and_logged(tmp_path) -> None:
    lines: list[str] = []
    recorder = Recorder(tmp_path, epochs=3, log=lines.append)
    recorder.open(resume=False)
    recorder.record(row(1), VAL)
    recorder.record(row(2), VAL)
    recorder.close()
    rows = [json.loads(x) for x in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert rows == [row(1), row(2)]
    assert lines[0] == "epoch 1/3 loss 0.5000 val bal.acc 0.7500 (thr 0.400) auc nan"
    assert len(lines) == 2


def test_a_new_run_starts_the_file_afresh_and_a_resumed_one_appends(tmp_path) -> None:
    (tmp_path / METRICS_FILE).write_text(json.dumps(row(1)) + "\n")
    resumed = Recorder(tmp_path, epochs=2)
    resumed.open(resume=True)
    resumed.record(row(2), VAL)
    resumed.close()
    assert len((tmp_path / METRICS_FILE).read_text().splitlines()) == 2
    fresh = Recorder(tmp_path, epochs=2)
    fresh.open(resume=False)
    assert not (tmp_path / METRICS_FILE).exists()
    fresh.record(row(1), VAL)
    assert len((tmp_path / METRICS_FILE).read_text().splitlines()) == 1


def test_a_process_that_does_not_record_writes_and_logs_nothing(tmp_path) -> None:
    (tmp_path / METRICS_FILE).write_text("kept\n")
    lines: list[str] = []
    recorder = Recorder(tmp_path, epochs=1, log=lines.append, enabled=False)
    recorder.open(resume=False)
    recorder.record(row(1), VAL)
    recorder.close()
    assert (tmp_path / METRICS_FILE).read_text() == "kept\n" and lines == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [METRICS_FILE]
