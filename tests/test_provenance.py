"""Where a result came from: the commit, the versions that decide a result and the machine, one function for the
experiments' results and the benchmarks'."""

from __future__ import annotations

import json
import sys
from importlib import metadata

from mitotype import __version__, provenance
from tests.conftest import load_benchmark


def test_the_environment_names_the_commit_the_versions_and_the_machine(monkeypatch) -> None:
    monkeypatch.setenv("MITOTYPE_COMMIT", "abc123")
    env = provenance.environment()
    assert env["commit"] == "abc123 (from MITOTYPE_COMMIT)"
    assert env["mitotype"] == __version__
    assert env["timm"] == metadata.version("timm") and env["peft"] == metadata.version("peft")
    assert env["torch"] == metadata.version("torch")
    assert env["cpu_count"] >= 1 and env["python"] == f"{sys.version_info.major}.{sys.version_info.minor}." \
                                                       f"{sys.version_info.micro}"
    from mitotype.evaluation.summary import environment

    assert environment() == env  # cross-validation, ablation and hold-out results record the same


def test_outside_a_checkout_the_commit_is_unknown_not_an_unrelated_repositorys(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MITOTYPE_COMMIT", raising=False)
    monkeypatch.setattr(provenance, "SOURCE_ROOT", tmp_path)  # an installed package: no .git beside it
    assert provenance.git_commit() == "uncommitted"


def test_a_benchmark_result_records_the_same_provenance(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MITOTYPE_COMMIT", "abc123")
    common = load_benchmark("_common")
    path = common.write_result("probe", "python probe.py", {"x": 1}, path=tmp_path / "probe.json")
    result = json.loads(path.read_text())
    assert result["commit"] == "abc123 (from MITOTYPE_COMMIT)"
    assert result["machine"] == provenance.machine() and result["software"] == provenance.versions()
    assert [p.name for p in tmp_path.iterdir()] == ["probe.json"]  # written atomically, no temp file left
