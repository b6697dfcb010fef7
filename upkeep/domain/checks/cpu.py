"""[cpu] Number of online CPUs; the load check divides by it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from upkeep.domain.checks._common import to_int
from upkeep.domain.checks.base import Check, EvalContext, Measurement, ParseError, Thresholds

# nproc is coreutils (and busybox >= 1.23); getconf is POSIX; /proc/cpuinfo is the last resort
# for minimal busybox builds that have neither.
COMMAND = (
    "nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null"
    " || grep -c '^processor' /proc/cpuinfo"
)


class CpuFacts(BaseModel):
    count: int = Field(ge=1)


def parse(stdout: str) -> CpuFacts:
    """Parse the single CPU count line."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if len(lines) != 1:
        raise ParseError(f"expected one line with the CPU count, got {len(lines)}")
    count = to_int(lines[0], "CPU count")
    if count < 1:
        raise ParseError(f"CPU count {count} is not positive")
    return CpuFacts(count=count)


def evaluate(facts: CpuFacts, thresholds: Thresholds, ctx: EvalContext) -> list[Measurement]:
    """Report the CPU count; never a finding."""
    return [Measurement(subject="cpus", value=str(facts.count))]


CHECK = Check(
    name="cpu", title="CPU count", command=COMMAND, parse=parse, evaluate=evaluate, timeout=20
)
