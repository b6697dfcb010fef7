"""System-log error grading."""

from __future__ import annotations

import pytest

from upkeep.domain.checks import syslog
from upkeep.domain.checks.base import EvalContext, Severity, Thresholds


def _facts(count: int, source: str = "journal") -> syslog.SyslogFacts:
    lines = [f"line {i}" for i in range(min(count, syslog.KEEP))]
    path = "/var/log/syslog" if source == "file" else None
    return syslog.SyslogFacts(source=source, path=path, count=count, last_lines=lines)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, None),
        (1, Severity.MINOR),
        (2, Severity.MINOR),
        (99, Severity.MINOR),
        (100, Severity.MAJOR),
        (101, Severity.MAJOR),
    ],
)
def test_count_boundaries(count: int, expected: Severity | None) -> None:
    [m] = syslog.evaluate(_facts(count), Thresholds(), EvalContext())
    assert m.severity is expected


def test_raised_minor_limit() -> None:
    t = Thresholds(syslog_errors_minor=5, syslog_errors_major=10)
    assert syslog.evaluate(_facts(4), t, EvalContext())[0].severity is None
    assert syslog.evaluate(_facts(5), t, EvalContext())[0].severity is Severity.MINOR
    assert syslog.evaluate(_facts(10), t, EvalContext())[0].severity is Severity.MAJOR


def test_evidence_is_the_last_lines_and_window_is_named() -> None:
    [m] = syslog.evaluate(_facts(3), Thresholds(syslog_window_hours=48), EvalContext())
    assert m.evidence == "line 0\nline 1\nline 2"
    assert "last 48 h" in m.message


def test_file_source_says_there_is_no_time_window() -> None:
    [m] = syslog.evaluate(_facts(2, "file"), Thresholds(), EvalContext())
    assert "/var/log/syslog" in m.message and "no time window" in m.message
