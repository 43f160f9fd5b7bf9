"""The HTML report, the predictions CSV and the atomic writers."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mitotype.evaluation.metrics import per_domain_metrics
from mitotype.evaluation.report import (
    N_FIGURES,
    PREDICTION_COLUMNS,
    SECTIONS,
    read_predictions_csv,
    write_ablation_report,
    write_predictions_csv,
    write_report,
)
from mitotype.ioutils import atomic_write_bytes, write_json_atomic


def make_rows(domains: list[str], n: int = 120, seed: int = 0, all_normal: str | None = None) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        domain = domains[i % len(domains)]
        votes = int(rng.integers(0, 4))
        label = 0 if domain == all_normal else int(votes >= 2)
        p = float(np.clip(0.2 * votes + 0.4 * rng.random(), 0, 1))
        rows.append(
            {
                "uid": f"fig{i}",
                "fold": f"lodo-{domain}",
                "domain": domain,
                "group": f"{domain}-slide{i % 7}",
                "p_atypical": p,
                "decision": int(p >= 0.5),
                "label": label,
                "votes_atypical": votes,
                "votes_cast": 3 if votes in (1, 2) else 2,
            }
        )
    return rows


def summary_of(rows: list[dict], n_boot: int = 40) -> dict[str, Any]:
    return per_domain_metrics(
        [r["label"] for r in rows],
        [r["p_atypical"] for r in rows],
        0.5,
        [r["domain"] for r in rows],
        groups=[r["group"] for r in rows],
        n_boot=n_boot,
    )


def check_report(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'id="{section}"' in text
    assert text.count("<img") == N_FIGURES
    assert text.count('src="data:image/png;base64,') == N_FIGURES
    assert "http://" not in text and "https://" not in text and "<script" not in text  # self-contained
    assert "<details>" in text
    return text


def test_report_with_several_domains(tmp_path: Path) -> None:
    rows = make_rows(["Hamamatsu XR", "Aperio CS2", "TUPAC16 <raw>"])
    out = write_report(tmp_path / "r" / "report.html", summary_of(rows), rows, "LODO", config={"lr": 0.001})
    text = check_report(out)
    assert "TUPAC16 &lt;raw&gt;" in text and "TUPAC16 <raw>" not in text  # names escaped
    assert "±" in text and "pooled (challenge ranking)" in text
    assert "&quot;lr&quot;: 0.001" in text
    assert "[0." in text  # bootstrap intervals shown


def test_report_with_a_single_domain(tmp_path: Path) -> None:
    rows = make_rows(["only"], n=30)
    text = check_report(write_report(tmp_path / "one.html", summary_of(rows), rows))
    assert "only" in text


def test_report_with_a_domain_lacking_a_class(tmp_path: Path) -> None:
    rows = make_rows(["mixed", "all normal"], all_normal="all normal")
    summary = summary_of(rows)
    assert summary["per_domain"]["all normal"]["roc_auc"] is None
    text = check_report(write_report(tmp_path / "gap.html", summary, rows))
    assert "n/a" in text and "Left out of the mean" in text


def test_report_from_cv_results_with_per_fold_thresholds(tmp_path: Path) -> None:
    rows = make_rows(["a", "b"], n=40)
    for r in rows:
        r["threshold"] = 0.4 if r["domain"] == "a" else 0.6
        r["decision"] = int(r["p_atypical"] >= r["threshold"])
        r["votes_atypical"], r["votes_cast"] = None, 0  # votes unknown
    thr = np.array([r["threshold"] for r in rows])
    summary = per_domain_metrics(
        [r["label"] for r in rows], [r["p_atypical"] for r in rows], thr, [r["domain"] for r in rows]
    )
    summary["pooled_ci"] = {"balanced_accuracy": (0.4, 0.9)}
    results = {"summary": summary, "config": {"seed": 1}, "folds": [{"name": "lodo-a"}], "scheme": "lodo"}
    text = check_report(write_report(tmp_path / "cv.html", results, rows))
    assert "run details" in text and "thresholds differ" in text
    assert "[0.400, 0.900]" in text


def test_report_rejects_empty_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no prediction rows"):
        write_report(tmp_path / "x.html", {}, [])


def test_predictions_csv_round_trip(tmp_path: Path) -> None:
    rows = make_rows(["a", "b"], n=5)
    rows[0]["threshold"] = 0.5  # extra key kept after the standard columns
    rows[1]["votes_atypical"] = None
    path = write_predictions_csv(tmp_path / "predictions.csv", rows)
    header = path.read_text().splitlines()[0].split(",")
    assert header == [*PREDICTION_COLUMNS, "threshold"]
    back = read_predictions_csv(path)
    assert back[0]["p_atypical"] == rows[0]["p_atypical"] and back[0]["label"] == rows[0]["label"]
    assert back[1]["votes_atypical"] is None


def test_ablation_report(tmp_path: Path) -> None:
    pooled = {"balanced_accuracy": 0.8}
    table = {
        "scheme": "lodo",
        "variants": {
            "all": {"pooled": pooled, "domain_mean": 0.8, "domain_std": 0.03},
            "no_mixup": {
                "pooled": {"balanced_accuracy": 0.77},
                "domain_mean": 0.76,
                "domain_std": 0.05,
                "delta_vs_all": {"delta": -0.03, "ci_low": -0.06, "ci_high": 0.0},
            },
        },
        "switches": {"mixup": "strategies.mixup.enabled"},
        "config": {"seed": 0},
    }
    text = write_ablation_report(tmp_path / "ablation.html", table).read_text()
    assert text.count("<img") == 1 and "strategies.mixup.enabled=false" in text and "-0.030" in text


def test_write_json_atomic(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "out.json"
    write_json_atomic(path, {"a": 1, "b": [0.5, None]})
    assert json.loads(path.read_text()) == {"a": 1, "b": [0.5, None]}
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1, "b": [0.5, None]}  # old content intact
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]  # no temp file left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_atomic_write_keeps_existing_mode(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o600)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o600
