"""Clock skew grading against the inspector's clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from upkeep.domain.checks import clock
from upkeep.domain.checks.base import EvalContext, Severity, Thresholds

NOW = datetime(2024, 3, 4, 9, 12, 0, tzinfo=UTC)


def _skew(seconds: float, ntp: bool | None = None) -> list:
    facts = clock.ClockFacts(epoch=NOW.timestamp() + seconds, subsecond=True, ntp_synchronized=ntp)
    return clock.evaluate(facts, Thresholds(), EvalContext(inspected_at=NOW))


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, None),
        (1.99, None),
        (2.0, Severity.MAJOR),
        (-2.0, Severity.MAJOR),
        (29.9, Severity.MAJOR),
        (30.0, Severity.CRITICAL),
        (-31, Severity.CRITICAL),
        (3600, Severity.CRITICAL),
    ],
)
def test_skew_boundaries(seconds: float, expected: Severity | None) -> None:
    skew, _ = _skew(seconds)
    assert skew.severity is expected


def test_direction_in_message() -> None:
    skew, _ = _skew(-45)
    assert "behind" in skew.message and "critical at 30 s" in skew.message


def test_naive_inspector_time_is_utc() -> None:
    facts = clock.ClockFacts(epoch=NOW.timestamp(), subsecond=False, ntp_synchronized=True)
    skew, ntp = clock.evaluate(
        facts, Thresholds(), EvalContext(inspected_at=NOW.replace(tzinfo=None))
    )
    assert skew.severity is None and ntp.value == "synchronized"


def test_without_inspector_time_nothing_is_graded() -> None:
    facts = clock.ClockFacts(epoch=0, subsecond=True, ntp_synchronized=None)
    skew, ntp = clock.evaluate(facts, Thresholds(), EvalContext())
    assert skew.severity is None and skew.value == "not measured" and ntp.value == "unknown"


def test_ntp_not_synchronized_is_minor() -> None:
    _, ntp = _skew(0, ntp=False)
    assert ntp.severity is Severity.MINOR


@pytest.mark.parametrize("line", ["1709543520.%N", "1709543520", "1709543520.N", "1709543520."])
def test_busybox_date_variants(line: str) -> None:
    facts = clock.parse(f"@@ date\n{line}\n@@ ntp\nunknown\n")
    assert facts.epoch == 1709543520.0 and not facts.subsecond
