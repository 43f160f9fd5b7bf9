"""What a CLI says about how a dataset was read: skipped records, adapted images and the reader's warnings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mitotype.cli.main import main
from mitotype.training.inputs import load_figures, reading_notes, skipped_note, warnings_note
from tests.conftest import make_model_dir


def _patches(root: Path, good: int, broken: int) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(good):
        Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(root / f"ok{i}.png")
    for i in range(broken):
        (root / f"bad{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def test_skipped_records_are_named_and_counted(tmp_path: Path) -> None:
    figures = load_figures(_patches(tmp_path / "p", good=2, broken=5), on_error="skip", labels_optional=True)
    note = skipped_note(figures)
    assert note is not None and note.startswith("skipped 5 record(s)") and "kept 2" in note
    assert "bad0.png" in note and "and 2 more" in note  # three named, the rest counted
    clean = load_figures(_patches(tmp_path / "q", good=2, broken=0), labels_optional=True)
    assert skipped_note(clean) is None and reading_notes(clean) == []


def test_warnings_are_counted_by_kind(tmp_path: Path) -> None:
    root = _patches(tmp_path / "p", good=2, broken=0)
    (root / "slide.svs").write_bytes(b"not a patch")
    figures = load_figures(root, labels_optional=True)
    note = warnings_note(figures)
    assert note is not None and "1 ignored-file" in note
    assert note in reading_notes(figures)


def test_predict_with_skip_says_which_figures_it_left_out(tmp_path: Path, capsys) -> None:
    data = _patches(tmp_path / "new", good=3, broken=2)
    out = tmp_path / "p.csv"
    assert main(["predict", str(data), "--model", str(make_model_dir(tmp_path / "m")), "--out", str(out),
                 "--on-error", "skip", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "note: skipped 2 record(s) with errors (on_error=skip), kept 3" in printed
    assert "bad1.png" in printed
    assert len(out.read_text().splitlines()) == 1 + 3
    single = tmp_path / "one.csv"
    assert main(["predict", str(data / "ok0.png"), "--model", str(tmp_path / "m"), "--out", str(single),
                 "--device", "cpu"]) == 0
    assert single.read_text().splitlines()[1].startswith("ok0.png,")
