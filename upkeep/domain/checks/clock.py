"""[clock] Clock skew against the inspector's clock, and NTP sync state where cheap."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pydantic import BaseModel

from upkeep.domain.checks._common import section
from upkeep.domain.checks.base import (
    Check,
    EvalContext,
    Measurement,
    ParseError,
    Severity,
    Thresholds,
    grade,
)

# timedatectl needs a running systemd; without one (containers, OpenRC) it would only fail.
COMMAND = (
    "echo '@@ date'; date -u +%s.%N; echo '@@ ntp'; "
    "if command -v timedatectl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then "
    "timedatectl show -p NTPSynchronized --value 2>/dev/null || echo unknown; "
    "else echo unknown; fi"
)

# GNU date prints nanoseconds; busybox and BSD print "N", "%N" or nothing after the dot.
_EPOCH = re.compile(r"^(\d+)(?:\.(\d+|%?N)?)?$")


class ClockFacts(BaseModel):
    epoch: float
    """The host's UTC clock in seconds since 1970 when ``date`` ran."""
    subsecond: bool
    """False when ``date`` has no %N: the epoch is then truncated to whole seconds."""
    ntp_synchronized: bool | None
    """timedatectl's NTPSynchronized; None when not available (no systemd, old timedatectl)."""


def parse(stdout: str) -> ClockFacts:
    """Parse ``date -u +%s.%N`` and the NTPSynchronized answer."""
    _, date_lines = section(stdout, "date")
    _, ntp_lines = section(stdout, "ntp")
    date_lines = [line.strip() for line in date_lines if line.strip()]
    ntp_lines = [line.strip() for line in ntp_lines if line.strip()]
    if len(date_lines) != 1:
        raise ParseError(f"expected one date line, got {len(date_lines)}")
    match = _EPOCH.match(date_lines[0])
    if match is None:
        raise ParseError(f"not an epoch time: {date_lines[0][:40]!r}")
    whole, fraction = match.group(1), match.group(2)
    subsecond = fraction is not None and fraction.isdigit()
    epoch = float(f"{whole}.{fraction}") if subsecond else float(whole)
    if len(ntp_lines) != 1 or ntp_lines[0] not in ("yes", "no", "unknown"):
        raise ParseError(f"unexpected NTP state {ntp_lines!r}")
    ntp = {"yes": True, "no": False, "unknown": None}[ntp_lines[0]]
    return ClockFacts(epoch=epoch, subsecond=subsecond, ntp_synchronized=ntp)


def _skew(facts: ClockFacts, thresholds: Thresholds, ctx: EvalContext) -> Measurement:
    if ctx.inspected_at is None:
        return Measurement(
            subject="clock skew", value="not measured", message="no inspector time recorded"
        )
    inspected = ctx.inspected_at
    if inspected.tzinfo is None:
        inspected = inspected.replace(tzinfo=UTC)
    skew = facts.epoch - inspected.timestamp()
    size = abs(skew)
    major, critical = thresholds.clock_skew_seconds_major, thresholds.clock_skew_seconds_critical
    severity = grade(size, major, critical)
    direction = "ahead of" if skew > 0 else "behind"
    value = f"{size:.1f} s {direction} the inspector"
    threshold = f"major at {major:g} s, critical at {critical:g} s"
    if severity is None:
        return Measurement(subject="clock skew", value=value, threshold=threshold)
    limit = critical if severity is Severity.CRITICAL else major
    remote = datetime.fromtimestamp(facts.epoch, UTC).isoformat(timespec="seconds")
    return Measurement(
        subject="clock skew",
        value=value,
        threshold=threshold,
        severity=severity,
        message=(
            f"The clock is {size:.1f} s {direction} the inspector's ({severity.value} at "
            f"{limit:g} s)"
        ),
        evidence=(
            f"host {remote}, inspector {inspected.isoformat(timespec='seconds')}"
            + ("" if facts.subsecond else "; host date has no sub-second precision")
        ),
        recommendation=(
            "Enable time synchronisation (chrony or systemd-timesyncd) against reliable NTP "
            "servers and check that UDP 123 is reachable."
        ),
    )


def _ntp(facts: ClockFacts) -> Measurement:
    if facts.ntp_synchronized is None:
        return Measurement(subject="NTP", value="unknown")
    if facts.ntp_synchronized:
        return Measurement(subject="NTP", value="synchronized")
    return Measurement(
        subject="NTP",
        value="not synchronized",
        severity=Severity.MINOR,
        message="systemd reports the clock as not synchronized with NTP",
        recommendation=(
            "Check timedatectl timesync-status or chronyc tracking and fix the NTP configuration."
        ),
    )


def evaluate(facts: ClockFacts, thresholds: Thresholds, ctx: EvalContext) -> list[Measurement]:
    """Grade |host - inspector| with clock_skew_seconds_*; NTP not synchronized is minor."""
    return [_skew(facts, thresholds, ctx), _ntp(facts)]


CHECK = Check(
    name="clock",
    title="Clock skew and NTP",
    command=COMMAND,
    parse=parse,
    evaluate=evaluate,
    timeout=20,
)
