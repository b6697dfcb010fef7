"""[memory] Memory and swap use from /proc/meminfo."""

from __future__ import annotations

from pydantic import BaseModel, Field

from upkeep.domain.checks._common import fmt_pct, to_int
from upkeep.domain.checks.base import Check, EvalContext, Measurement, ParseError, Thresholds, grade

COMMAND = (
    "if [ -r /proc/meminfo ]; then cat /proc/meminfo;"
    " else echo 'UPKEEP-SKIP: no /proc/meminfo (not Linux)'; fi"
)


class MemoryFacts(BaseModel):
    total_kb: int = Field(gt=0)
    available_kb: int = Field(ge=0)
    available_estimated: bool
    """True on kernels before 3.14 (no MemAvailable): available is free + buffers + cached."""
    swap_total_kb: int = Field(ge=0)
    swap_free_kb: int = Field(ge=0)

    @property
    def used_pct(self) -> float:
        used = max(self.total_kb - self.available_kb, 0)
        return round(used * 100 / self.total_kb, 1)

    @property
    def swap_used_pct(self) -> float:
        if self.swap_total_kb == 0:
            return 0.0
        used = max(self.swap_total_kb - self.swap_free_kb, 0)
        return round(used * 100 / self.swap_total_kb, 1)


def parse(stdout: str) -> MemoryFacts:
    """Parse /proc/meminfo (``Key:  <n> kB`` lines)."""
    values: dict[str, int] = {}
    for line in stdout.splitlines():
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        words = rest.split()
        if not sep or not words or len(words) > 2 or (len(words) == 2 and words[1] != "kB"):
            raise ParseError(f"not a /proc/meminfo line: {line[:80]!r}")
        values[key.strip()] = to_int(words[0], key.strip())
    missing = [k for k in ("MemTotal", "MemFree", "SwapTotal", "SwapFree") if k not in values]
    if missing:
        raise ParseError(f"/proc/meminfo lacks {', '.join(missing)}")
    if values["MemTotal"] <= 0:
        raise ParseError("MemTotal is zero")
    if "MemAvailable" in values:
        available, estimated = values["MemAvailable"], False
    else:
        available = values["MemFree"] + values.get("Buffers", 0) + values.get("Cached", 0)
        estimated = True
    return MemoryFacts(
        total_kb=values["MemTotal"],
        available_kb=min(available, values["MemTotal"]),
        available_estimated=estimated,
        swap_total_kb=values["SwapTotal"],
        swap_free_kb=values["SwapFree"],
    )


def _gib(kb: int) -> str:
    return f"{kb / 1048576:.1f} GiB"


def _memory(facts: MemoryFacts, thresholds: Thresholds) -> Measurement:
    pct = facts.used_pct
    used = facts.total_kb - facts.available_kb
    value = f"{fmt_pct(pct)} used ({_gib(used)} of {_gib(facts.total_kb)})"
    threshold = (
        f"major at {fmt_pct(thresholds.memory_used_pct_major)}, "
        f"critical at {fmt_pct(thresholds.memory_used_pct_critical)}"
    )
    severity = grade(pct, thresholds.memory_used_pct_major, thresholds.memory_used_pct_critical)
    if severity is None:
        return Measurement(subject="memory", value=value, threshold=threshold)
    limit = (
        thresholds.memory_used_pct_critical
        if severity.value == "critical"
        else thresholds.memory_used_pct_major
    )
    basis = "free+buffers+cached (old kernel)" if facts.available_estimated else "MemAvailable"
    return Measurement(
        subject="memory",
        value=value,
        threshold=threshold,
        severity=severity,
        message=f"Memory is {fmt_pct(pct)} used ({severity.value} at {fmt_pct(limit)})",
        evidence=f"MemTotal {facts.total_kb} kB, available {facts.available_kb} kB ({basis})",
        recommendation=(
            "Find the largest processes (ps -eo rss,pid,cmd --sort=-rss) and fix leaks, "
            "tune them or add memory."
        ),
    )


def _swap(facts: MemoryFacts, thresholds: Thresholds) -> Measurement:
    if facts.swap_total_kb == 0:
        return Measurement(subject="swap", value="none configured")
    pct = facts.swap_used_pct
    used = facts.swap_total_kb - facts.swap_free_kb
    value = f"{fmt_pct(pct)} used ({_gib(used)} of {_gib(facts.swap_total_kb)})"
    threshold = (
        f"major at {fmt_pct(thresholds.swap_used_pct_major)}, "
        f"critical at {fmt_pct(thresholds.swap_used_pct_critical)}"
    )
    severity = grade(pct, thresholds.swap_used_pct_major, thresholds.swap_used_pct_critical)
    if severity is None:
        return Measurement(subject="swap", value=value, threshold=threshold)
    limit = (
        thresholds.swap_used_pct_critical
        if severity.value == "critical"
        else thresholds.swap_used_pct_major
    )
    return Measurement(
        subject="swap",
        value=value,
        threshold=threshold,
        severity=severity,
        message=f"Swap is {fmt_pct(pct)} used ({severity.value} at {fmt_pct(limit)})",
        evidence=f"SwapTotal {facts.swap_total_kb} kB, SwapFree {facts.swap_free_kb} kB",
        recommendation=(
            "The host is short of memory: find what is swapped out (smem, /proc/*/status VmSwap) "
            "and reduce memory use or add RAM."
        ),
    )


def evaluate(facts: MemoryFacts, thresholds: Thresholds, ctx: EvalContext) -> list[Measurement]:
    """Grade memory used (total - available) and, when swap exists, swap used."""
    return [_memory(facts, thresholds), _swap(facts, thresholds)]


CHECK = Check(
    name="memory",
    title="Memory and swap",
    command=COMMAND,
    parse=parse,
    evaluate=evaluate,
    timeout=20,
)
