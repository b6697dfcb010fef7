"""Failed-unit grading."""

from __future__ import annotations

from upkeep.domain.checks import systemd
from upkeep.domain.checks.base import EvalContext, Severity, Thresholds


def _facts(n: int) -> systemd.SystemdFacts:
    return systemd.SystemdFacts(
        failed=[
            systemd.FailedUnit(
                unit=f"u{i}.service", load="loaded", active="failed", sub="failed", description="x"
            )
            for i in range(n)
        ]
    )


def test_none_failed_is_fine() -> None:
    [m] = systemd.evaluate(_facts(0), Thresholds(), EvalContext())
    assert m.severity is None and m.value == "0"


def test_at_limit_major_below_minor() -> None:
    t = Thresholds(failed_units_major=2)
    assert {m.severity for m in systemd.evaluate(_facts(1), t, EvalContext())} == {Severity.MINOR}
    assert {m.severity for m in systemd.evaluate(_facts(2), t, EvalContext())} == {Severity.MAJOR}
    assert {m.severity for m in systemd.evaluate(_facts(3), t, EvalContext())} == {Severity.MAJOR}


def test_one_line_per_unit_with_action() -> None:
    ms = systemd.evaluate(_facts(2), Thresholds(), EvalContext())
    assert [m.subject for m in ms] == ["u0.service", "u1.service"]
    assert "systemctl status u0.service" in ms[0].recommendation
