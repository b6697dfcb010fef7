"""An inspection report's data and figures: scores, severity counts, the report's rows.

Pure: no database, no templates. :mod:`upkeep.tasks.reports` gathers a run's records into an
:class:`InspectionReport`, :mod:`upkeep.tasks.render` turns it into a page, a Markdown
artifact and a table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from upkeep.domain.checks.base import Severity
from upkeep.domain.findings import severity_rank

SEVERITIES: tuple[str, ...] = tuple(s.value for s in sorted(Severity, key=lambda s: s.rank))
"""Severity values, worst first."""

SCORE_PENALTY: Mapping[str, int] = {"critical": 25, "major": 10, "minor": 3, "info": 0}

SCORE_FORMULA = (
    "Host score = 100 − 25 per critical − 10 per major − 3 per minor finding (info: 0), "
    "never below 0; a host that could not be reached scores 0. "
    "Overall score = the mean of the host scores, rounded."
)


FindingState = Literal["new", "persisting", "resolved"]


# ---------------------------------------------------------------------------------------------
# Scores


class _HasSeverity(Protocol):
    @property
    def severity(self) -> str | None: ...


def _severity_of(item: Mapping[str, Any] | _HasSeverity) -> str | None:
    value = item.get("severity") if isinstance(item, Mapping) else item.severity
    return None if value is None else str(value)


def host_score(
    measurements_or_findings: Iterable[Mapping[str, Any] | _HasSeverity], reachable: bool
) -> int:
    """A host's health, 0..100.

    100 minus 25 per critical, 10 per major and 3 per minor item (info and ok items cost
    nothing), never below 0. An unreachable host scores 0: nothing about it could be checked.
    Accepts measurement dicts (as stored on ``HostResult``), :class:`Measurement` or
    :class:`Finding` objects; an unknown severity costs nothing.
    """
    if not reachable:
        return 0
    penalty = 0
    for item in measurements_or_findings:
        severity = _severity_of(item)
        if severity is not None:
            penalty += SCORE_PENALTY.get(severity, 0)
    return max(0, 100 - penalty)


def overall_score(host_scores: Sequence[int]) -> int:
    """The mean of the host scores, rounded half up; 0 when no host was inspected."""
    if not host_scores:
        return 0
    return int(sum(host_scores) / len(host_scores) + 0.5)


def severity_counts(items: Iterable[Mapping[str, Any] | _HasSeverity]) -> dict[str, int]:
    """How many items of each severity, every severity present (worst first), ok items ignored."""
    counts = dict.fromkeys(SEVERITIES, 0)
    for item in items:
        severity = _severity_of(item)
        if severity in counts:
            counts[severity] += 1
    return counts


# ---------------------------------------------------------------------------------------------
# The report's data


@dataclass(frozen=True)
class CustomerInfo:
    code: str
    name: str


@dataclass(frozen=True)
class ContractInfo:
    code: str
    name: str
    timezone: str


@dataclass(frozen=True)
class RunInfo:
    id: int
    kind: str
    status: str
    window: str | None
    started_at: datetime
    finished_at: datetime | None
    requested_by: str | None
    flow_run_id: str | None


@dataclass(frozen=True)
class PlanApproval:
    approver: str | None
    decided_at: datetime | None
    comment: str | None


@dataclass(frozen=True)
class MeasurementRow:
    check: str
    subject: str
    value: str
    threshold: str
    severity: str | None
    message: str
    evidence: str
    recommendation: str


@dataclass(frozen=True)
class HostRow:
    name: str
    address: str
    port: int
    role: str | None
    system: str | None
    reachable: bool
    error: str | None
    error_kind: str | None
    score: int
    counts: dict[str, int]
    measurements: tuple[MeasurementRow, ...]
    skipped: dict[str, str]

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class FindingRow:
    host: str
    check: str
    subject: str
    severity: str
    message: str
    evidence: str
    recommendation: str
    first_seen_at: datetime
    last_seen_at: datetime
    state: FindingState
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class SeverityGroup:
    severity: str
    findings: tuple[FindingRow, ...]


@dataclass(frozen=True)
class PreviousRun:
    id: int
    kind: str
    started_at: datetime


@dataclass(frozen=True)
class Changes:
    """What changed since the previous inspection: as seen by this run's reconciliation."""

    previous: PreviousRun | None
    new: tuple[FindingRow, ...]
    persisting: tuple[FindingRow, ...]
    resolved: tuple[FindingRow, ...]


@dataclass(frozen=True)
class UnreachedHost:
    name: str
    endpoint: str
    reason: str
    error_kind: str | None


@dataclass(frozen=True)
class InspectionReport:
    """Everything one inspection report shows; pure data, times in the contract's timezone."""

    customer: CustomerInfo
    contract: ContractInfo
    run: RunInfo
    approval: PlanApproval | None
    hosts: tuple[HostRow, ...]
    findings: tuple[SeverityGroup, ...]
    """This run's open findings (new and persisting), worst first; no empty groups."""
    changes: Changes
    unreached: tuple[UnreachedHost, ...]
    overall_score: int
    generated_at: datetime
    score_formula: str = SCORE_FORMULA
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    """Findings of this run by severity."""

    @property
    def finding_count(self) -> int:
        return sum(len(g.findings) for g in self.findings)


# ---------------------------------------------------------------------------------------------
# Rows from plain values


def measurement_row(raw: Mapping[str, Any]) -> MeasurementRow:
    """A measurement as stored on a host result (a dict) as a report row."""
    severity = raw.get("severity")
    return MeasurementRow(
        check=str(raw.get("check", "")),
        subject=str(raw.get("subject", "") or ""),
        value=str(raw.get("value", "") or ""),
        threshold=str(raw.get("threshold", "") or ""),
        severity=None if severity is None else str(severity),
        message=str(raw.get("message", "") or ""),
        evidence=str(raw.get("evidence", "") or ""),
        recommendation=str(raw.get("recommendation", "") or ""),
    )


def finding_sort_key(row: FindingRow) -> tuple[int, str, str, str]:
    """Worst first, then by host, check and subject."""
    return (severity_rank(row.severity), row.host, row.check, row.subject)


def group_by_severity(rows: Iterable[FindingRow]) -> tuple[SeverityGroup, ...]:
    """The rows by severity, worst group first, each group in :func:`finding_sort_key` order."""
    by_sev: dict[str, list[FindingRow]] = {}
    for row in rows:
        by_sev.setdefault(row.severity, []).append(row)
    ordered = sorted(by_sev, key=severity_rank)
    return tuple(
        SeverityGroup(sev, tuple(sorted(by_sev[sev], key=finding_sort_key))) for sev in ordered
    )
