"""The lever table pairs each lever with the baseline run of the same seed and measures it against the
baseline's spread over seeds."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def levers() -> ModuleType:
    return load_benchmark("lodo_levers")


def lodo_result(seed: int, ba: dict[str, float], sens: dict[str, float], pooled: float) -> dict[str, Any]:
    """An ``amibr_lodo.py`` result with the fields the table reads."""
    per_domain = {name: {"balanced_accuracy": ba[name], "sensitivity": sens[name], "roc_auc": ba[name] + 0.1}
                  for name in ba}
    mean = sum(ba.values()) / len(ba)
    return {"extra": {"seed": seed},
            "figures": {"per_domain": per_domain, "pooled": {"balanced_accuracy": pooled},
                        "domain_mean_balanced_accuracy": mean, "wall_seconds": 1.0}}


def run(levers: ModuleType, seed: int, a: float, b: float, pooled: float) -> dict[str, Any]:
    figures = levers.run_figures(lodo_result(seed, {"A": a, "B": b}, {"A": a - 0.1, "B": b - 0.1}, pooled))
    figures["result"] = f"run-{seed}"
    return figures


def test_lever_change_is_paired_by_seed_and_set_against_the_spread(levers: ModuleType) -> None:
    # the pooled figure barely moves between the two seeds, domain A moves by 0.04
    baseline = [run(levers, 0, 0.70, 0.80, 0.750), run(levers, 1, 0.74, 0.80, 0.751)]
    big = [run(levers, 1, 0.84, 0.90, 0.851)]  # seed 1 only: compared with baseline seed 1, not the mean
    small = [run(levers, 0, 0.70, 0.81, 0.755), run(levers, 1, 0.74, 0.80, 0.756)]
    table = levers.lever_table(baseline, {"big": big, "small": small})

    base = table["baseline"]
    assert base["pooled_ba"]["mean"] == pytest.approx(0.7505)
    assert base["pooled_ba"]["sd"] == pytest.approx(0.000707, abs=1e-5)
    assert base["worst_ba"]["mean"] == pytest.approx(0.72)
    # per-domain seed sd: A 0.0283, B 0.0 -> 0.0141, the floor for every balanced accuracy
    assert base["domain_seed_sd"] == pytest.approx(0.01414, abs=1e-4)
    assert base["noise"]["pooled_ba"] == pytest.approx(0.01414, abs=1e-4)
    assert base["noise"]["worst_sens"] == pytest.approx(base["worst_sens"]["sd"])

    assert table["big"]["seeds"] == [1]
    assert table["big"]["pooled_ba"]["change"] == pytest.approx(0.10)
    assert table["big"]["worst_ba"]["change"] == pytest.approx(0.10)
    assert table["big"]["pooled_ba"]["beats_spread"] is True
    # +0.005 on both seeds: above the pooled sd over seeds, below the per-domain noise
    assert table["small"]["pooled_ba"]["change_per_seed"] == pytest.approx([0.005, 0.005])
    assert table["small"]["pooled_ba"]["beats_spread"] is False

    text = levers.markdown(table)
    assert "| baseline | 2 | 0.750 ± 0.001 |" in text
    assert "| a change must exceed | | 0.014 |" in text
    assert "| big | 1 | 0.851 (+0.100)* |" in text
    assert "| small | 2 | 0.756 (+0.005) |" in text


def test_a_lever_without_a_baseline_seed_is_refused(levers: ModuleType) -> None:
    baseline = [run(levers, 0, 0.70, 0.80, 0.75)]
    with pytest.raises(SystemExit, match="no baseline run with the seed"):
        levers.lever_table(baseline, {"other": [run(levers, 3, 0.7, 0.8, 0.75)]})
    with pytest.raises(SystemExit, match="distinct seeds"):
        levers.lever_table(baseline * 2, {})


def transfer_result(seed: int, ba: dict[str, float], pooled: float) -> dict[str, Any]:
    """A ``lodo_transfer.py`` result with one variant and two rules; ``platt`` is ``validation`` + 0.02."""
    def rules(value: float) -> dict[str, Any]:
        return {rule: {"balanced_accuracy": value + shift, "sensitivity": value + shift - 0.1, "roc_auc": 0.9}
                for rule, shift in (("validation", 0.0), ("platt", 0.02))}
    per_domain = {f"lodo-{name}": {"n_test": 100, "n_pos": 20, "tta": {"rules": rules(value)}}
                  for name, value in ba.items()}
    summary = {f"tta|{rule}": {"pooled_balanced_accuracy": pooled + shift}
               for rule, shift in (("validation", 0.0), ("platt", 0.02))}
    return {"extra": {"seed": seed}, "figures": {"summary": summary, "per_domain": per_domain}}


def test_a_transfer_scoring_is_a_lever_named_by_variant_and_rule(levers: ModuleType, tmp_path) -> None:
    path = tmp_path / "transfer_s0.json"
    path.write_text(json.dumps(transfer_result(0, {"A": 0.70, "B": 0.80}, 0.76)))
    figures = levers.load_run(f"{path}@tta|platt")
    assert figures["result"] == "transfer_s0@tta|platt"
    assert figures["seed"] == 0
    assert figures["pooled_ba"] == pytest.approx(0.78)
    assert figures["per_domain_ba"] == pytest.approx({"A": 0.72, "B": 0.82})  # the fold prefix "lodo-" dropped
    assert figures["mean_ba"] == pytest.approx(0.77)
    assert figures["worst_sens"] == pytest.approx(0.62)

    table = levers.lever_table([run(levers, 0, 0.70, 0.80, 0.76)], {"tta+platt": [figures]})
    assert table["tta+platt"]["pooled_ba"]["change"] == pytest.approx(0.02)
    assert table["tta+platt"]["worst_ba"]["change"] == pytest.approx(0.02)


def test_a_wrong_result_or_scoring_names_the_file(levers: ModuleType, tmp_path) -> None:
    path = tmp_path / "transfer_s0.json"
    path.write_text(json.dumps(transfer_result(0, {"A": 0.70}, 0.70)))
    with pytest.raises(SystemExit, match=r"transfer_s0.json: no scoring 'tta\|oracle': variants tta; rules platt"):
        levers.load_run(f"{path}@tta|oracle")
    with pytest.raises(SystemExit, match=r"transfer_s0.json: not an amibr_lodo.py result \(no field"):
        levers.load_run(str(path))
    with pytest.raises(SystemExit, match=r"missing\.json: no such result"):
        levers.load_run(str(tmp_path / "missing.json"))


def counted_result(seed: int, domains: dict[str, tuple[int, int, float, float]]) -> dict[str, Any]:
    """An ``amibr_lodo.py`` result from per-domain (n, positives, sensitivity, specificity)."""
    per_domain = {name: {"n": n, "n_pos": pos, "sensitivity": sens, "specificity": spec,
                         "balanced_accuracy": (sens + spec) / 2, "roc_auc": 0.8}
                  for name, (n, pos, sens, spec) in domains.items()}
    return {"extra": {"seed": seed}, "figures": {"per_domain": per_domain, "pooled": {"balanced_accuracy": 0.5}}}


def test_domains_restrict_every_figure_and_recompute_the_pooled_one(levers: ModuleType, tmp_path) -> None:
    # A: 10 of 20 positives found, 60 of 80 negatives kept; B: 30 of 40, 54 of 60
    full = tmp_path / "full_s0.json"
    full.write_text(json.dumps(counted_result(0, {"A": (100, 20, 0.5, 0.75), "B": (100, 40, 0.75, 0.9),
                                                  "C": (50, 10, 0.1, 0.1)})))
    part = tmp_path / "part_s0.json"
    part.write_text(json.dumps(counted_result(0, {"A": (100, 20, 0.6, 0.75), "B": (100, 40, 0.75, 0.9)})))

    figures = levers.load_run(str(full), ["A", "B"])
    # pooled: sensitivity 40/60, specificity 114/140 -- not the mean of the two domains' balanced accuracies
    assert figures["pooled_ba"] == pytest.approx((40 / 60 + 114 / 140) / 2)
    assert figures["mean_ba"] == pytest.approx((0.625 + 0.825) / 2)
    assert set(figures["per_domain_ba"]) == {"A", "B"}

    with pytest.raises(SystemExit, match=r"part_s0.json: no held-out domain 'C' \(it has A, B\)"):
        levers.load_run(str(part), ["A", "C"])
    # without --domains a run over other folds than the baseline's is refused, not compared
    with pytest.raises(SystemExit, match="part_s0: held-out domains A, B, the baseline's A, B, C"):
        levers.lever_table([levers.load_run(str(full))], {"part": [levers.load_run(str(part))]})
    table = levers.lever_table([figures], {"part": [levers.load_run(str(part), ["A", "B"])]})
    assert table["part"]["pooled_ba"]["change"] == pytest.approx(2 / 60 / 2)
