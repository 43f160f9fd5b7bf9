"""The cv summary on the terminal shows sensitivity and specificity beside balanced accuracy per domain."""

from __future__ import annotations

import pytest

from mitotype.cli.summary import print_summary
from mitotype.evaluation.summary import summarise


def _row(domain: str, group: str, label: int, p: float, threshold: float = 0.5) -> dict:
    return {"uid": f"{domain}{group}{label}{p}", "dataset": "d", "fold": domain, "domain": domain, "group": group,
            "p_atypical": p, "decision": int(p >= threshold), "threshold": threshold, "tta": False, "label": label,
            "votes_atypical": None, "votes_cast": None}


def test_per_domain_sensitivity_and_specificity_are_printed(capsys: pytest.CaptureFixture[str]) -> None:
    rows = []
    # domain A: every atypical found (sens 1.0), half the normals wrongly called (spec 0.5)
    rows += [_row("A", f"s{i}", 1, 0.9) for i in range(4)]
    rows += [_row("A", f"s{i}", 0, 0.7 if i % 2 else 0.1) for i in range(8)]
    # domain B: a threshold too high for it: one atypical of four found (sens 0.25), specificity 1.0
    rows += [_row("B", f"t{i}", 1, 0.8 if i == 0 else 0.3) for i in range(4)]
    rows += [_row("B", f"t{i}", 0, 0.2) for i in range(8)]
    print_summary({"summary": summarise(rows, n_bootstrap=20)})
    out = capsys.readouterr().out
    header, line_a, line_b = out.splitlines()[:3]
    assert "sens" in header and "spec" in header
    assert line_a.split()[:3] == ["A", "12", "4"] and line_a.split()[-3:-1] == ["1.000", "0.500"]
    assert line_b.split()[-3:-1] == ["0.250", "1.000"]
    assert "sens 0.625" in out and "spec 0.750" in out  # pooled over both domains
