"""[uptime] Time since boot and the 15-minute load average per CPU."""

from __future__ import annotations

from pydantic import BaseModel, Field

from upkeep.domain.checks._common import to_float
from upkeep.domain.checks.base import (
    Check,
    EvalContext,
    Measurement,
    ParseError,
    Severity,
    Thresholds,
    grade,
)
from upkeep.domain.checks.cpu import CpuFacts

COMMAND = (
    "if [ -r /proc/uptime ] && [ -r /proc/loadavg ]; then cat /proc/uptime /proc/loadavg;"
    " else echo 'UPKEEP-SKIP: no /proc/uptime or /proc/loadavg (not Linux)'; fi"
)


class UptimeFacts(BaseModel):
    uptime_seconds: float = Field(ge=0)
    load1: float = Field(ge=0)
    load5: float = Field(ge=0)
    load15: float = Field(ge=0)


def parse(stdout: str) -> UptimeFacts:
    """Parse /proc/uptime (seconds, idle) followed by /proc/loadavg."""
    lines = [line.split() for line in stdout.splitlines() if line.strip()]
    if len(lines) != 2 or len(lines[0]) != 2 or len(lines[1]) != 5:
        raise ParseError("expected /proc/uptime (2 fields) then /proc/loadavg (5 fields)")
    if "/" not in lines[1][3]:
        raise ParseError(f"/proc/loadavg 4th field {lines[1][3]!r} is not running/total")
    return UptimeFacts(
        uptime_seconds=to_float(lines[0][0], "uptime"),
        load1=to_float(lines[1][0], "load1"),
        load5=to_float(lines[1][1], "load5"),
        load15=to_float(lines[1][2], "load15"),
    )


def _uptime(facts: UptimeFacts, thresholds: Thresholds) -> Measurement:
    days = facts.uptime_seconds / 86400
    value = f"{days:.1f} days"
    threshold = f"minor above {thresholds.uptime_days_minor:g} days"
    if days > thresholds.uptime_days_minor:
        return Measurement(
            subject="uptime",
            value=value,
            threshold=threshold,
            severity=Severity.MINOR,
            message=(
                f"Up for {days:.0f} days (longer than {thresholds.uptime_days_minor:g}): "
                "kernel and library updates installed since boot are not in use"
            ),
            recommendation="Reboot in the next maintenance window to pick up kernel updates.",
        )
    return Measurement(subject="uptime", value=value, threshold=threshold)


def _load(facts: UptimeFacts, thresholds: Thresholds, ctx: EvalContext) -> Measurement:
    loads = f"{facts.load1:.2f} {facts.load5:.2f} {facts.load15:.2f}"
    cpu = ctx.facts.get("cpu")
    if not isinstance(cpu, CpuFacts):
        return Measurement(
            subject="load average",
            value=loads,
            message="CPU count unknown, so the load was not graded",
        )
    per_core = facts.load15 / cpu.count
    severity = grade(per_core, thresholds.load_per_core_major, thresholds.load_per_core_critical)
    value = f"{per_core:.2f} per CPU (15 min load {facts.load15:.2f} on {cpu.count} CPUs)"
    threshold = (
        f"major at {thresholds.load_per_core_major:g}, "
        f"critical at {thresholds.load_per_core_critical:g} per CPU"
    )
    if severity is None:
        return Measurement(subject="load average", value=value, threshold=threshold)
    limit = (
        thresholds.load_per_core_critical
        if severity is Severity.CRITICAL
        else thresholds.load_per_core_major
    )
    return Measurement(
        subject="load average",
        value=value,
        threshold=threshold,
        severity=severity,
        message=(
            f"15-minute load is {per_core:.2f} per CPU ({severity.value} at {limit:g}); "
            f"load 1/5/15 min: {loads}"
        ),
        evidence=f"load average: {loads}; CPUs: {cpu.count}",
        recommendation=(
            "Find the busy processes (top, ps -eo pcpu,pid,cmd --sort=-pcpu) or I/O waits "
            "(vmstat 1) and fix or resize the host."
        ),
    )


def evaluate(facts: UptimeFacts, thresholds: Thresholds, ctx: EvalContext) -> list[Measurement]:
    """Grade uptime (minor when longer than the limit) and load15 per CPU from ``cpu`` facts."""
    return [_uptime(facts, thresholds), _load(facts, thresholds, ctx)]


CHECK = Check(
    name="uptime",
    title="Uptime and load average",
    command=COMMAND,
    parse=parse,
    evaluate=evaluate,
    timeout=20,
)
