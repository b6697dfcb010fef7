"""[systemd] Units in the failed state."""

from __future__ import annotations

from pydantic import BaseModel

from upkeep.domain.checks.base import (
    Check,
    EvalContext,
    Measurement,
    ParseError,
    Severity,
    Thresholds,
)

# /run/systemd/system exists only when systemd is PID 1 (sd_booted); in a container or on
# OpenRC/sysvinit, systemctl exists but cannot answer.
COMMAND = (
    "if ! command -v systemctl >/dev/null 2>&1; then "
    "echo 'UPKEEP-SKIP: systemctl not found (not a systemd host)'; "
    "elif [ ! -d /run/systemd/system ]; then "
    'echo "UPKEEP-SKIP: systemd is not running as PID 1 (PID 1 is '
    '$(cat /proc/1/comm 2>/dev/null || echo unknown))"; '
    "else systemctl list-units --state=failed --no-legend --plain --no-pager; fi"
)

_BULLETS = ("●", "*", "×")


class FailedUnit(BaseModel):
    unit: str
    load: str
    active: str
    sub: str
    description: str


class SystemdFacts(BaseModel):
    failed: list[FailedUnit]


def parse(stdout: str) -> SystemdFacts:
    """Parse ``systemctl list-units --state=failed --no-legend --plain`` rows."""
    failed: list[FailedUnit] = []
    for line in stdout.splitlines():
        words = line.split(None, 4)
        if words and words[0] in _BULLETS:  # some releases keep the status dot with --plain
            words = line.split(None, 5)[1:]
        if not words:
            continue
        if len(words) < 4 or words[2] != "failed" or "." not in words[0]:
            raise ParseError(f"not a failed-unit row: {line[:80]!r}")
        failed.append(
            FailedUnit(
                unit=words[0],
                load=words[1],
                active=words[2],
                sub=words[3],
                description=words[4].strip() if len(words) > 4 else "",
            )
        )
    return SystemdFacts(failed=failed)


def evaluate(facts: SystemdFacts, thresholds: Thresholds, ctx: EvalContext) -> list[Measurement]:
    """One line per failed unit: major once failed_units_major units failed, minor below."""
    limit = thresholds.failed_units_major
    threshold = f"major at {limit} failed unit{'s' if limit != 1 else ''}"
    if not facts.failed:
        return [Measurement(subject="failed units", value="0", threshold=threshold)]
    severity = Severity.MAJOR if len(facts.failed) >= limit else Severity.MINOR
    return [
        Measurement(
            subject=unit.unit,
            value=f"{unit.active} ({unit.sub})",
            threshold=threshold,
            severity=severity,
            message=f"Unit {unit.unit} has failed ({unit.description or 'no description'})",
            evidence=f"{unit.unit} {unit.load} {unit.active} {unit.sub} {unit.description}",
            recommendation=(
                f"Check systemctl status {unit.unit} and journalctl -u {unit.unit}; fix or "
                "disable the unit, then run systemctl reset-failed."
            ),
        )
        for unit in facts.failed
    ]


CHECK = Check(
    name="systemd",
    title="Failed systemd units",
    command=COMMAND,
    parse=parse,
    evaluate=evaluate,
    timeout=30,
)
