"""Uptime and load grading; the load reads the CPU count from the cpu check's facts."""

from __future__ import annotations

import pytest

from upkeep.domain.checks import cpu, uptime
from upkeep.domain.checks.base import EvalContext, Severity, Thresholds

DAY = 86400


def _facts(days: float = 1, load15: float = 0.0) -> uptime.UptimeFacts:
    return uptime.UptimeFacts(uptime_seconds=days * DAY, load1=load15, load5=load15, load15=load15)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (179 * DAY, None),
        (180 * DAY, None),
        (180 * DAY + 1, Severity.MINOR),
        (400 * DAY, Severity.MINOR),
    ],
)
def test_uptime_longer_than_limit_is_minor(seconds: float, expected: Severity | None) -> None:
    up, _ = uptime.evaluate(_facts(days=seconds / DAY), Thresholds(), EvalContext())
    assert up.severity is expected
    if expected:
        assert "kernel" in up.recommendation


@pytest.mark.parametrize(
    ("load15", "expected"),
    [
        (3.99, None),
        (4.0, Severity.MAJOR),
        (4.01, Severity.MAJOR),
        (7.99, Severity.MAJOR),
        (8.0, Severity.CRITICAL),
        (8.01, Severity.CRITICAL),
    ],
)
def test_load_per_core_boundaries_on_four_cpus(load15: float, expected: Severity | None) -> None:
    ctx = EvalContext(facts={"cpu": cpu.CpuFacts(count=4)})
    _, load = uptime.evaluate(_facts(load15=load15), Thresholds(), ctx)
    assert load.severity is expected


def test_load_without_cpu_facts_is_not_graded() -> None:
    _, load = uptime.evaluate(_facts(load15=50), Thresholds(), EvalContext())
    assert load.severity is None
    assert "CPU count unknown" in load.message


def test_cpu_never_a_finding() -> None:
    [m] = cpu.evaluate(cpu.CpuFacts(count=8), Thresholds(), EvalContext())
    assert m.severity is None and m.value == "8"
