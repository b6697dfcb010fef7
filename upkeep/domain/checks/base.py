"""The shape every health check shares.

A check is a fixed command from the catalogue, a pure parser from its raw output to typed
facts, and a pure evaluation of those facts against the contract's thresholds. Nothing in this
module touches the network: :func:`evaluate_check` turns one captured command result into an
outcome, which is what the unit tests exercise on captured output and what the sweep calls
after running the command over SSH.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

SKIP_MARKER = "UPKEEP-SKIP:"
"""A catalogue command prints this as its first line when the check does not apply here."""

EVIDENCE_LIMIT = 2000


class Severity(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"critical": 0, "major": 1, "minor": 2, "info": 3}[self.value]


class ParseError(ValueError):
    """Raised by a parser when the output is not what the command produces."""


class Thresholds(BaseModel):
    """A contract's limits. Every value has a default; an inventory may override any."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    disk_used_pct_major: float = Field(80, ge=0, le=100)
    disk_used_pct_critical: float = Field(90, ge=0, le=100)
    inode_used_pct_major: float = Field(80, ge=0, le=100)
    inode_used_pct_critical: float = Field(90, ge=0, le=100)
    memory_used_pct_major: float = Field(90, ge=0, le=100)
    memory_used_pct_critical: float = Field(95, ge=0, le=100)
    swap_used_pct_major: float = Field(50, ge=0, le=100)
    swap_used_pct_critical: float = Field(80, ge=0, le=100)
    load_per_core_major: float = Field(1.0, gt=0)
    load_per_core_critical: float = Field(2.0, gt=0)
    uptime_days_minor: float = Field(180, gt=0)
    clock_skew_seconds_major: float = Field(2.0, gt=0)
    clock_skew_seconds_critical: float = Field(30.0, gt=0)
    syslog_window_hours: int = Field(24, ge=1, le=24 * 31)
    syslog_errors_minor: int = Field(1, ge=1)
    syslog_errors_major: int = Field(100, ge=1)
    pending_updates_minor: int = Field(1, ge=1)
    security_updates_major: int = Field(1, ge=1)
    failed_units_major: int = Field(1, ge=1)
    allowed_tcp_ports: list[int] | None = None
    """Ports expected to listen; any other listening port is a minor finding. None: no check."""


@dataclass(frozen=True)
class RawResult:
    """What one catalogue command produced on one host."""

    command: str
    exit_code: int
    stdout: str
    stderr: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class EvalContext:
    """What an evaluation may know beyond its own facts.

    ``facts`` holds the parsed facts of the checks that ran before on the same host (the load
    check reads the CPU count), ``inspected_at`` the inspector's clock when the command ran.
    """

    inspected_at: datetime | None = None
    facts: Mapping[str, BaseModel] = field(default_factory=dict)


@dataclass(frozen=True)
class Measurement:
    """One line of a host's table: what was measured, against what, and how bad it is.

    ``severity`` None means within limits; any other value is a finding.
    """

    subject: str
    value: str
    threshold: str = ""
    severity: Severity | None = None
    message: str = ""
    evidence: str = ""
    recommendation: str = ""


F = TypeVar("F", bound=BaseModel)


@dataclass(frozen=True)
class Check(Generic[F]):
    """One catalogue entry."""

    name: str
    title: str
    command: str
    """A fixed POSIX sh command. ``{placeholders}`` are filled only by :meth:`render`."""
    parse: Callable[[str], F]
    evaluate: Callable[[F, Thresholds, EvalContext], list[Measurement]]
    ok_exit_codes: frozenset[int] = frozenset({0})
    timeout: float | None = None
    params: Callable[[Thresholds], dict[str, Any]] | None = None
    """Values that go into the command; each is quoted with shlex.quote."""

    def render(self, thresholds: Thresholds) -> str:
        if self.params is None:
            return self.command
        values = {k: shlex.quote(str(v)) for k, v in self.params(thresholds).items()}
        return self.command.format(**values)


@dataclass(frozen=True)
class CheckOutcome:
    check: str
    facts: dict[str, Any] | None
    measurements: list[Measurement]
    skipped: str | None = None
    parsed: BaseModel | None = None

    @property
    def findings(self) -> list[Measurement]:
        return [m for m in self.measurements if m.severity is not None]


def _tail(text: str, limit: int = EVIDENCE_LIMIT) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def skip_reason(stdout: str) -> str | None:
    first = stdout.lstrip().split("\n", 1)[0].strip()
    if first.startswith(SKIP_MARKER):
        return first[len(SKIP_MARKER) :].strip() or "not applicable on this host"
    return None


def not_evaluated(check: str, measurement: Measurement) -> CheckOutcome:
    """An outcome with no facts: the check could not look (failed, unparsable, timed out)."""
    return CheckOutcome(check=check, facts=None, measurements=[measurement])


def evaluate_check(
    check: Check[Any], raw: RawResult, thresholds: Thresholds, ctx: EvalContext | None = None
) -> CheckOutcome:
    """Turn one command's raw result into an outcome. Never raises for bad output."""
    ctx = ctx or EvalContext()
    reason = skip_reason(raw.stdout)
    if reason is not None:
        return CheckOutcome(
            check=check.name,
            facts=None,
            measurements=[Measurement(subject="", value="skipped", message=reason)],
            skipped=reason,
        )
    if raw.exit_code not in check.ok_exit_codes:
        return not_evaluated(
            check.name,
            Measurement(
                subject="",
                value=f"exit {raw.exit_code}",
                severity=Severity.INFO,
                message=f"{check.title}: the command failed with exit code {raw.exit_code}",
                evidence=_tail(raw.stderr or raw.stdout),
            ),
        )
    try:
        facts = check.parse(raw.stdout)
    except (ParseError, ValueError, IndexError, KeyError) as exc:
        return not_evaluated(
            check.name,
            Measurement(
                subject="",
                value="unparsed",
                severity=Severity.INFO,
                message=f"{check.title}: could not parse the output ({exc})",
                evidence=_tail(raw.stdout + ("\n" + raw.stderr if raw.stderr else "")),
            ),
        )
    measurements = check.evaluate(facts, thresholds, ctx)
    return CheckOutcome(
        check=check.name,
        facts=facts.model_dump(mode="json"),
        measurements=measurements,
        parsed=facts,
    )


def grade(value: float, major: float, critical: float) -> Severity | None:
    """The usual two-level threshold: at or above critical, at or above major, or fine."""
    if value >= critical:
        return Severity.CRITICAL
    if value >= major:
        return Severity.MAJOR
    return None
