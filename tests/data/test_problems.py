from __future__ import annotations

import pytest

from mitotype.data.problems import ProblemLog, ReadResult
from mitotype.errors import ConfigError, DataError


def test_fail_raises_one_line_naming_file_and_row() -> None:
    log = ProblemLog("fail")
    with pytest.raises(DataError) as info:
        log.error("labels.csv", 7, "unknown-label", "majority value 'MAYBE'\nis not NMF/AMF")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("labels.csv, row 7: majority value 'MAYBE' is not NMF/AMF")
    assert "unknown-label" in message


def test_skip_records_errors_and_warnings_never_raise() -> None:
    for policy in ("fail", "skip"):
        log = ProblemLog(policy)
        log.warn("a.csv", 3, "duplicate-id", "twice")
        assert [p.severity for p in log.problems] == ["warning"]
    log = ProblemLog("skip")
    log.error("b.png", None, "corrupt-image", "broken")
    assert len(log.problems) == 1
    assert str(log.problems[0]) == "b.png: broken"


def test_read_result_counts_by_kind() -> None:
    log = ProblemLog("skip")
    log.warn("a", 1, "duplicate-id", "x")
    log.error("a", 2, "missing-file", "y")
    log.error("a", 3, "missing-file", "z")
    result = ReadResult([], log.problems)
    assert result.problem_counts() == {("error", "missing-file"): 2, ("warning", "duplicate-id"): 1}
    assert len(result.errors) == 2 and len(result.warnings) == 1
    assert [p.row for p in result.of_kind("missing-file")] == [2, 3]


def test_unknown_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="on_error"):
        ProblemLog("ignore")
