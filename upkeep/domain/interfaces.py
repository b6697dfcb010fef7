"""The interfaces a customer depends on: each system's smoke checks, what one probe means, and
the figures over many (PROCESSES.md, section 4: after a release broke a customer group's
interface, the provider monitored it and sent a daily message that it was working).

A smoke check is an HTTP endpoint probed from upkeep with an expected status, an optional text
the body must contain and a latency bound. The same checks serve the interface monitor (on the
contract's ``interface_monitor`` cadence) and, later, the release checklist's pre- and
post-release verification. Pure: the probing itself is ``upkeep.tasks.interfaces``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from upkeep.domain.naming import repeated
from upkeep.domain.releases import ReleaseSpec

INTERFACE_CHECK = "interface"
"""The ``check`` of a finding about a failing smoke check (subject ``SYSTEM/CHECK``)."""
MONITOR_RUN_KIND = "interface-monitor"
STATUS_RUN_KIND = "interface-status"
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
SECRET_QUERY = re.compile(r"token|key|secret|passw|auth|sig|session|credential", re.IGNORECASE)
"""Query parameter names that carry a secret: refused in a smoke check's URL."""
BODY_KEPT = 65536
"""How much of a response body a probe reads (a body text must appear within it)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class SmokeCheck(_Strict):
    """One HTTP endpoint the customer depends on, as the inventory writes it."""

    name: str = Field(min_length=1, max_length=64, pattern=NAME_RE)
    url: HttpUrl
    method: Literal["GET", "HEAD"] = "GET"
    expect_status: int = Field(200, ge=100, le=599)
    body_contains: str | None = Field(None, min_length=1, max_length=1000)
    max_latency_ms: float = Field(2000, gt=0, le=600_000)
    timeout_seconds: float = Field(10, gt=0, le=300)
    severity: Literal["critical", "major", "minor"] = "critical"
    """Of the finding raised while the check fails."""

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, value: HttpUrl) -> HttpUrl:
        if value.username or value.password:
            raise ValueError(
                "a smoke check URL must not carry a user or password (it is stored, logged and "
                "shown in reports): probe an endpoint that needs no login"
            )
        secret = [k for k, _ in value.query_params() if SECRET_QUERY.search(k)]
        if secret:
            raise ValueError(
                f"a smoke check URL must not carry a secret in its query ({', '.join(secret)}): "
                "it is stored, logged and shown in reports; probe an endpoint that needs no "
                "login"
            )
        return value

    @model_validator(mode="after")
    def _head_has_no_body(self) -> SmokeCheck:
        if self.method == "HEAD" and self.body_contains:
            raise ValueError("a HEAD request has no body to contain text: use GET")
        return self


class SystemSpec(_Strict):
    """A system of the contract and the smoke checks of the interfaces it offers."""

    name: str = Field(min_length=1, max_length=200, pattern=NAME_RE)
    description: str = Field("", max_length=2000)
    smoke_checks: list[SmokeCheck] = Field(min_length=1)
    release: ReleaseSpec | None = None
    """How the system is released and rolled back (the release checklist)."""

    @field_validator("smoke_checks")
    @classmethod
    def _unique_names(cls, value: list[SmokeCheck]) -> list[SmokeCheck]:
        twice = repeated(item.name for item in value)
        if twice:
            raise ValueError(f"smoke check names must be unique in a system: {', '.join(twice)}")
        return value


@dataclass(frozen=True)
class Probe:
    """What one request saw: the status and body, or the error; the time to the whole
    response."""

    status: int | None
    latency_ms: float | None
    body: str = ""
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


def judge(check: SmokeCheck, probe: Probe) -> Verdict:
    """Whether ``probe`` passes ``check``; the reason names what was expected and seen."""
    if probe.error is not None or probe.status is None:
        return Verdict(False, f"no answer from {check.url}: {probe.error or 'no status'}")
    took = f"{probe.latency_ms:.0f} ms" if probe.latency_ms is not None else "unknown time"
    if probe.status != check.expect_status:
        return Verdict(False, f"HTTP {probe.status}, expected {check.expect_status} ({took})")
    if check.body_contains and check.body_contains not in probe.body:
        return Verdict(
            False,
            f"HTTP {probe.status} but the body lacks {check.body_contains!r} "
            f"(first {BODY_KEPT // 1024} KiB read)",
        )
    if probe.latency_ms is not None and probe.latency_ms > check.max_latency_ms:
        return Verdict(
            False, f"HTTP {probe.status} in {took}, slower than {check.max_latency_ms:.0f} ms"
        )
    return Verdict(True, f"HTTP {probe.status} in {took}")


def subject(system: str, check: str) -> str:
    """A finding's subject for one smoke check."""
    return f"{system}/{check}"


@dataclass(frozen=True)
class Sample:
    """One recorded probe, as the figures read it."""

    at: datetime
    ok: bool
    latency_ms: float | None


@dataclass(frozen=True)
class Outage:
    """Consecutive failed probes: from the first failure to the next success (None: still
    failing at the last probe)."""

    start: datetime
    end: datetime | None
    probes: int


@dataclass(frozen=True)
class Figures:
    """One smoke check over a window: how often it answered right, how fast, when it did not."""

    probes: int
    passed: int
    availability: float | None
    """Percent of probes that passed; None without probes."""
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None
    outages: list[Outage] = field(default_factory=list)

    @property
    def failing_now(self) -> bool:
        return bool(self.outages) and self.outages[-1].end is None


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The nearest-rank percentile (a value that was measured, never an interpolation)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def figures(samples: Sequence[Sample]) -> Figures:
    """Availability, latency percentiles of the probes that got an answer in time, and the
    outages, from ``samples`` in any order."""
    ordered = sorted(samples, key=lambda s: s.at)
    latencies = [s.latency_ms for s in ordered if s.ok and s.latency_ms is not None]
    outages: list[Outage] = []
    start: datetime | None = None
    count = 0
    for s in ordered:
        if not s.ok:
            start = start or s.at
            count += 1
        elif start is not None:
            outages.append(Outage(start, s.at, count))
            start, count = None, 0
    if start is not None:
        outages.append(Outage(start, None, count))
    passed = sum(1 for s in ordered if s.ok)
    return Figures(
        probes=len(ordered),
        passed=passed,
        availability=round(100 * passed / len(ordered), 2) if ordered else None,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        max_ms=max(latencies) if latencies else None,
        outages=outages,
    )


def status_headline(
    contract: str, failing: Sequence[str], troubled: Sequence[str], unprobed: Sequence[str]
) -> str:
    """The daily message's subject: all well, or which interfaces are down now (``failing``),
    were down during the window (``troubled``) or were never probed (``unprobed``)."""
    if failing:
        return f"Interfaces of {contract}: DOWN now: {', '.join(failing)}"
    if unprobed:
        return f"Interfaces of {contract}: NOT PROBED: {', '.join(unprobed)}"
    if troubled:
        return f"Interfaces of {contract}: up now, had outages: {', '.join(troubled)}"
    return f"Interfaces of {contract}: all working"
