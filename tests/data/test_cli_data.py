"""``mitotype data inspect`` and ``mitotype data synth`` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datafactories import midog25_rows, truncate, write_midog25

from mitotype.cli.main import main


@pytest.mark.shared
def test_inspect_real_amibr(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "inspect", str(shared_data / "amibr"), "--check", "header"]) == 0
    out = capsys.readouterr().out
    assert "format amibr" in out and "3720 (2888 NMF / 832 AMF), 4 domain(s)" in out
    lines = {line.split("  ")[0].strip(): line.split() for line in out.splitlines() if line.strip()}
    assert lines["TUPAC16"][1:4] == ["1571", "428", "1999"]
    assert lines["Aperio CS2"][-3] == "688" and lines["Hamamatsu S360"][-3] == "582"
    assert lines["Hamamatsu XR"][-3] == "451"
    assert lines["total"][1:4] == ["2888", "832", "3720"]
    for votes, count in (("0", "2496"), ("1", "392"), ("2", "420"), ("3", "412")):
        assert lines[votes][1] == count
    assert "problems: none" in out


@pytest.mark.shared
def test_inspect_real_midog25_labels_as_json(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["data", "inspect", str(shared_data / "midog25"), "--check", "none", "--domain", "scanner",
                 "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "midog25" and report["normal"] == 10191 and report["atypical"] == 1748
    assert len(report["domains"]) == 4
    counts = {(c["severity"], c["kind"]): c["count"] for c in report["problem_counts"]}
    assert counts == {("warning", "majority-disagrees"): 49, ("warning", "duplicate-id"): 1}
    assert len(report["problems"]) == 50


def test_inspect_lists_problems_and_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = midog25_rows(10)
    for row in rows:  # one tumour per slide, as in the real file (a slide in two domains is a warning of its own)
        row["filename"] = f"{row['Tumor'].split()[1]}-{row['filename']}"
    rows[2]["majority"] = "AMF"
    write_midog25(tmp_path, rows)
    truncate(tmp_path / "images" / "6.png")
    assert main(["data", "inspect", str(tmp_path), "--on-error", "skip"]) == 1
    out = capsys.readouterr().out
    assert "problems: 1 error(s), 1 warning(s)" in out
    assert "error   corrupt-image" in out and "6.png: truncated PNG" in out
    assert "warning majority-disagrees" in out and "labels.csv, row 4" in out
    assert "figures: 9 (" in out
    assert main(["data", "inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "6.png" in err and len(err.strip().splitlines()) == 1
    assert main(["data", "inspect", str(tmp_path), "--on-error", "skip", "--max-problems", "1"]) == 1
    assert "... and 1 more" in capsys.readouterr().out


def test_inspect_generic_csv_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from datafactories import write_csv, write_png

    write_png(tmp_path / "a.png", seed=1)
    write_png(tmp_path / "b.png", seed=2)
    write_csv(tmp_path / "t.csv", ["img", "cls", "site"], [["a.png", "ok", "x"], ["b.png", "bad", "y"]])
    code = main(["data", "inspect", str(tmp_path / "t.csv"), "--format", "csv", "--column", "image=img",
                 "--column", "label=cls", "--column", "lab=site", "--label", "ok=normal", "--label",
                 "bad=atypical"])
    assert code == 0
    out = capsys.readouterr().out
    assert "2 (1 NMF / 1 AMF), 2 domain(s)" in out and "votes: none" in out
    assert main(["data", "inspect", str(tmp_path / "t.csv"), "--format", "csv", "--column", "image"]) == 2
    assert "--column expects KEY=VALUE" in capsys.readouterr().err


def test_synth_then_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out_dir), "--n-per-domain", "12", "--seed", "2"]) == 0
    said = capsys.readouterr().out
    assert said.startswith("wrote 48 figures") and "4 domain(s)" in said
    assert main(["data", "inspect", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "format midog25" in out and "48 (" in out and "4 domain(s)" in out


def test_data_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data"]) == 0
    assert "inspect" in capsys.readouterr().out


def _slides_csv(root: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """A CSV dataset of (label, slide, scanner, split) rows, one distinct patch each."""
    from datafactories import write_csv, write_png

    for i in range(len(rows)):
        write_png(root / f"p{i}.png", seed=i)
    return write_csv(root / "t.csv", ["img", "cls", "slide", "scanner", "split"],
                     [[f"p{i}.png", *row] for i, row in enumerate(rows)])


CSV_FLAGS = ["--format", "csv", "--column", "image=img", "--column", "label=cls", "--column", "group=slide",
             "--column", "scanner=scanner", "--label", "n=normal", "--label", "a=atypical"]


def test_inspect_counts_each_slide_once_and_warns_when_one_spans_domains(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A slide scanned on two scanners is one group, and leave-one-domain-out will drop part of it: say so."""
    table = _slides_csv(tmp_path, [("n", "s0", "A", ""), ("a", "s0", "B", ""), ("n", "s1", "A", ""),
                                   ("a", "s2", "B", "")])
    assert main(["data", "inspect", str(table), *CSV_FLAGS, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["groups"] == 3 and sorted(d["groups"] for d in report["domains"]) == [2, 2]
    [warning] = [p for p in report["problems"] if p["kind"] == "group-spans-domains"]
    assert warning["severity"] == "warning" and "'s0' is in 2 domains (A, B)" in warning["message"]
    assert main(["data", "inspect", str(table), *CSV_FLAGS]) == 0
    out = capsys.readouterr().out
    assert "2 domain(s), 3 group(s)" in out and "problems: 0 error(s), 1 warning(s)" in out
