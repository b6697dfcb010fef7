"""Service reports: what a contract's maintenance did over a month, quarter or year.

The plans promise monthly work reports and quarterly and annual summaries: what was done and
what was not, the faults found and fixed, what is still open, the approvals and how fast they
came, and the plan for the next period. As with inspection reports, three separate steps:

* :func:`build_service_report` reads the database and returns pure data
  (:class:`ServiceReport`), every time already in the contract's timezone;
* :func:`render_service_report_html`, :func:`render_service_report_markdown` and
  :func:`render_service_report_email` turn it into a printable page, a Prefect Markdown
  artifact and a mail;
* :func:`save_service_report` writes the page under the report directory, atomically.

Everything is read from the records (runs, host results, findings of hosts and of backups,
backup verifications, approval gates) and every headline figure lists the records it counts
(:attr:`ServiceReport.figures`). The next period's plan (:class:`PeriodPlan`) is computed
by the caller from the contract's cadences and blackouts: this module does not schedule.

A period is ``[start, end)`` in local dates of the contract's timezone: a run at 23:30 UTC
on 31 October belongs to November in Berlin.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from sqlmodel import Session, col, or_, select

from upkeep.domain.findings import severity_rank
from upkeep.domain.markup import md_escape
from upkeep.domain.naming import run_url
from upkeep.models import (
    Approval,
    ApprovalEvent,
    BackupVersion,
    Contract,
    Customer,
    Finding,
    FindingStatus,
    Host,
    HostResult,
    InspectionRun,
    RunStatus,
    utcnow,
)
from upkeep.tasks.backup_records import BACKUP_CHECK
from upkeep.tasks.gates import gate_report, human
from upkeep.tasks.records import RecordNotFound
from upkeep.tasks.reports import (
    SEVERITIES,
    ContractInfo,
    CustomerInfo,
    contract_zone,
    format_dt,
    link_target,
    safe_name,
    template_env,
    write_atomic,
)

log = logging.getLogger(__name__)

PeriodKind = Literal["month", "quarter", "year"]
PERIOD_KINDS: tuple[str, ...] = get_args(PeriodKind)
_MONTHS: dict[str, int] = {"month": 1, "quarter": 3, "year": 12}

REPORT_TEMPLATE = "report/service_report.html.j2"
EMAIL_TEXT_TEMPLATE = "email/service_report.txt.j2"
EMAIL_HTML_TEMPLATE = "email/service_report.html.j2"

NO_BACKUPS = "no backup verification recorded"
NO_PLAN = "Nothing is scheduled for the next period."


# ---------------------------------------------------------------------------------------------
# Periods


def _check_kind(kind: str) -> int:
    try:
        return _MONTHS[kind]
    except KeyError:
        raise ValueError(f"unknown period {kind!r}: one of {', '.join(PERIOD_KINDS)}") from None


def _add_months(day: date, months: int) -> date:
    """The first of the month ``months`` after (or before) ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _period_start(kind: str, day: date) -> date:
    """The first day of the period of ``kind`` that contains ``day``."""
    months = _check_kind(kind)
    month = (day.month - 1) // months * months + 1
    return date(day.year, month, 1)


def period_bounds(kind: PeriodKind, reference: date) -> tuple[date, date]:
    """``(start, end)`` of the last complete period of ``kind`` before ``reference``.

    ``end`` is exclusive: the first day of the period that contains ``reference`` (a report
    runs at the start of the next period). Pure: ``("month", 2026-01-05)`` gives
    ``(2025-12-01, 2026-01-01)``.
    """
    end = _period_start(kind, reference)
    return _add_months(end, -_check_kind(kind)), end


def next_period(kind: PeriodKind, end: date) -> tuple[date, date]:
    """``(start, end)`` of the period of ``kind`` that starts on ``end``."""
    start = _period_start(kind, end)
    return start, _add_months(start, _check_kind(kind))


def period_label(kind: PeriodKind, start: date) -> str:
    """``2026-11`` for a month, ``2026-Q4`` for a quarter, ``2026`` for a year."""
    _check_kind(kind)
    if kind == "month":
        return f"{start:%Y-%m}"
    if kind == "quarter":
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    return f"{start.year}"


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """The instant (UTC) at which ``day`` begins in ``zone``."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# The report's data

PROCESS_NAMES: Mapping[str, str] = {
    "inspection": "Health inspection",
    "recheck": "Re-check of open findings",
    "sweep": "Ad-hoc sweep",
    "demo": "Demonstration inspection",
    "backup": "Backup-restore verification",
    "backup_verification": "Backup-restore verification",
    "drill": "Disaster-recovery drill",
    "service_report": "Service report",
    "annual_plan": "Annual service plan",
    "patch_advisory": "Patch advisory",
}
"""What a customer calls each process and run kind (process keys of the inventory and the
``kind`` of recorded runs)."""


def process_name(key: str) -> str:
    """``"Health inspection"`` for ``inspection``; an unknown key in plain words."""
    return PROCESS_NAMES.get(key) or key.replace("_", " ").replace("-", " ").capitalize()


RunVerdict = Literal["completed", "completed with failures", "failed", "cancelled", "not finished"]


@dataclass(frozen=True)
class RunRow:
    id: int
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    requested_by: str | None
    window: str | None
    report_path: str | None
    problems: tuple[str, ...] = ()
    """What went wrong inside a run that ran to its end (a backup that failed verification, a
    host that could not be inspected), or why a run has no end."""

    @property
    def process(self) -> str:
        return process_name(self.kind)

    @property
    def verdict(self) -> RunVerdict:
        if self.status == RunStatus.COMPLETED:
            return "completed with failures" if self.problems else "completed"
        if self.status == RunStatus.FAILED:
            return "failed"
        if self.status == RunStatus.CANCELLED:
            return "cancelled"
        return "not finished"

    @property
    def clean(self) -> bool:
        return self.verdict == "completed"

    @property
    def css(self) -> str:
        return "completed" if self.clean else "failed"


@dataclass(frozen=True)
class RunTally:
    """Runs of one kind in the period, by verdict; each figure lists the runs it counts."""

    kind: str
    completed: tuple[int, ...]
    with_failures: tuple[int, ...]
    failed: tuple[int, ...]
    cancelled: tuple[int, ...]
    unfinished: tuple[int, ...]

    @property
    def process(self) -> str:
        return process_name(self.kind)

    @property
    def all(self) -> tuple[int, ...]:
        return tuple(
            sorted(
                (*self.completed, *self.with_failures, *self.failed, *self.cancelled)
                + self.unfinished
            )
        )

    @property
    def total(self) -> int:
        return len(self.all)


@dataclass(frozen=True)
class FindingRow:
    id: int
    host: str | None
    """None for a finding about something that is not a host (a system's backups)."""
    check: str
    subject: str
    severity: str
    message: str
    recommendation: str
    first_seen_at: datetime
    resolved_at: datetime | None
    run_id: int | None = None
    """The run that first found it."""
    age: timedelta | None = None
    """For findings open at the end of the period: how long they had been open by then."""

    @property
    def where(self) -> str:
        """The host, or ``backups of <system>`` for a backup finding."""
        if self.host is not None:
            return self.host
        return f"backups of {self.subject}" if self.check == BACKUP_CHECK else self.subject or "—"

    @property
    def age_text(self) -> str:
        return "—" if self.age is None else human(self.age)

    @property
    def age_days(self) -> int:
        return 0 if self.age is None else self.age.days


@dataclass(frozen=True)
class SeverityTally:
    severity: str
    opened: int
    resolved: int
    open_at_end: int


@dataclass(frozen=True)
class HostTally:
    host: str
    """A host name, or ``backups of <system>``."""
    opened: int
    resolved: int
    open_at_end: int


@dataclass(frozen=True)
class BackupVerification:
    """One verification of one backup (a ``BackupVersion`` record)."""

    id: int
    system: str
    kind: str
    backup: str
    """The backup file or snapshot; for a failed one, what went wrong."""
    taken_at: datetime | None
    verified_at: datetime
    outcome: str
    fault: str | None = None
    reason: str | None = None
    drill: bool = False
    run_id: int | None = None

    @property
    def good(self) -> bool:
        return self.outcome == "good"

    @property
    def verdict(self) -> str:
        if self.good:
            return "restored and verified"
        return f"FAILED: the {self.fault or 'system'} is at fault ({self.reason or 'unknown'})"


@dataclass(frozen=True)
class ApproverTimes:
    approver: str
    decisions: int
    median: timedelta
    p90: timedelta
    longest: timedelta

    @property
    def median_text(self) -> str:
        return human(self.median)

    @property
    def p90_text(self) -> str:
        return human(self.p90)

    @property
    def longest_text(self) -> str:
        return human(self.longest)


@dataclass(frozen=True)
class GateRow:
    gate: str
    subject: str
    requested_at: datetime
    decided_at: datetime | None
    decision: str | None
    approver: str | None
    escalated: bool
    id: int = 0


@dataclass(frozen=True)
class ApprovalSummary:
    times: tuple[ApproverTimes, ...]
    rows: tuple[GateRow, ...]

    @property
    def gates(self) -> int:
        return len(self.rows)

    @property
    def escalations(self) -> int:
        return sum(g.escalated for g in self.rows)

    @property
    def expiries(self) -> int:
        return sum(g.decision == "expired" for g in self.rows)

    @property
    def pending(self) -> int:
        return sum(g.decision is None for g in self.rows)


@dataclass(frozen=True)
class PlannedRun:
    """One run the contract's cadences plan, after blackouts."""

    at: datetime
    """When it runs (for a skipped run: the slot that will not run)."""
    process: str
    """The process's name, as a customer calls it."""
    cadence: str
    """The cadence in words."""
    notes: tuple[str, ...] = ()
    """Why it is not at the cadence's time: moved by a blackout or by daylight saving."""
    skipped: bool = False
    key: str = ""
    """The process key of the inventory (``inspection``, ``backup_verification``, ...)."""

    @property
    def label(self) -> str:
        """``Health inspection planned for 2027-02-02 02:00 CET``."""
        return f"{self.process} planned for {format_dt(self.at)}"


@dataclass(frozen=True)
class PeriodPlan:
    """What the contract's cadences plan for a period (the next one, or the reported one to
    see what was missed), computed by the caller."""

    runs: tuple[PlannedRun, ...] = ()
    blackouts: tuple[str, ...] = ()
    """The period's blackout days, in words."""
    policy: str | None = None
    """What a blackout does to a run, in words."""
    note: str | None = None
    """What could not be planned (a cadence that cannot be read, ...); None when all was."""


@dataclass(frozen=True)
class Figure:
    """A headline number and the records it counts (``run 12``, ``finding 7``, ...)."""

    label: str
    refs: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.refs)


@dataclass(frozen=True)
class ServiceReport:
    """Everything one service report shows; pure data, times in the contract's timezone."""

    customer: CustomerInfo
    contract: ContractInfo
    kind: str
    label: str
    start: date
    end: date
    """Exclusive: the first day after the period."""
    runs: tuple[RunRow, ...]
    run_tallies: tuple[RunTally, ...]
    opened: tuple[FindingRow, ...]
    resolved: tuple[FindingRow, ...]
    open_at_end: tuple[FindingRow, ...]
    """Open at the end of the period, worst and oldest first."""
    by_severity: tuple[SeverityTally, ...]
    by_host: tuple[HostTally, ...]
    backups: tuple[BackupVerification, ...]
    approvals: ApprovalSummary
    next_start: date
    next_end: date
    plan: PeriodPlan
    generated_at: datetime
    backup_sources: tuple[str, ...] = ()
    """The systems whose backups the contract says to verify."""
    due: tuple[PlannedRun, ...] = ()
    """Runs the cadences planned in the period that should be on record."""
    missed: tuple[PlannedRun, ...] = ()
    """Of ``due``, those with no run of their process recorded."""
    flow_run_id: str | None = None

    @property
    def planned(self) -> tuple[PlannedRun, ...]:
        """The runs that will happen in the next period (skipped ones left out)."""
        return tuple(p for p in self.plan.runs if not p.skipped)

    @property
    def skipped(self) -> tuple[PlannedRun, ...]:
        return tuple(p for p in self.plan.runs if p.skipped)

    @property
    def plan_note(self) -> str | None:
        return self.plan.note

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def next_last_day(self) -> date:
        return self.next_end - timedelta(days=1)

    @property
    def period_text(self) -> str:
        return f"{self.start.isoformat()} – {self.last_day.isoformat()}"

    @property
    def next_period_text(self) -> str:
        return f"{self.next_start.isoformat()} – {self.next_last_day.isoformat()}"

    @property
    def runs_total(self) -> int:
        return len(self.runs)

    @property
    def runs_not_done(self) -> tuple[RunRow, ...]:
        """Runs that did not complete cleanly: with failures, failed, cancelled, unfinished."""
        return tuple(r for r in self.runs if not r.clean)

    @property
    def runs_failed(self) -> int:
        return len(self.runs_not_done)

    @property
    def backups_good(self) -> tuple[BackupVerification, ...]:
        return tuple(b for b in self.backups if b.good)

    @property
    def backups_failed(self) -> tuple[BackupVerification, ...]:
        return tuple(b for b in self.backups if not b.good)

    @property
    def unverified_sources(self) -> tuple[str, ...]:
        """Backup sources of the contract with no verification recorded in the period."""
        verified = {b.system for b in self.backups}
        return tuple(s for s in self.backup_sources if s not in verified)

    @property
    def figures(self) -> tuple[Figure, ...]:
        """The headline numbers, each with the records it counts (in id order)."""

        def refs(noun: str, ids: Iterable[int]) -> tuple[str, ...]:
            return tuple(f"{noun} {i}" for i in sorted(ids))

        return (
            Figure("runs", refs("run", (r.id for r in self.runs))),
            Figure("runs not completed cleanly", refs("run", (r.id for r in self.runs_not_done))),
            Figure("planned runs with no run recorded", tuple(p.label for p in self.missed)),
            Figure("findings opened", refs("finding", (f.id for f in self.opened))),
            Figure("findings resolved", refs("finding", (f.id for f in self.resolved))),
            Figure("open at the end", refs("finding", (f.id for f in self.open_at_end))),
            Figure("backup verifications", refs("verification", (b.id for b in self.backups))),
            Figure(
                "failed backup verifications",
                refs("verification", (b.id for b in self.backups_failed)),
            ),
            Figure("approval gates", refs("gate", (g.id for g in self.approvals.rows))),
        )

    @property
    def advice(self) -> tuple[FindingRow, ...]:
        """Open critical and major findings with a recommended action, worst first."""
        return tuple(
            f
            for f in self.open_at_end
            if f.severity in ("critical", "major") and f.recommendation.strip()
        )


# ---------------------------------------------------------------------------------------------
# Building it from the database


def _finding_row(
    finding: Finding, host: Host | None, zone: tzinfo, end_utc: datetime | None = None
) -> FindingRow:
    assert finding.id is not None
    return FindingRow(
        id=finding.id,
        host=None if host is None else host.name,
        check=finding.check,
        subject=finding.subject,
        severity=finding.severity,
        message=finding.message,
        recommendation=finding.recommendation,
        first_seen_at=finding.first_seen_at.astimezone(zone),
        resolved_at=None if finding.resolved_at is None else finding.resolved_at.astimezone(zone),
        run_id=finding.run_id,
        age=None if end_utc is None else end_utc - finding.first_seen_at,
    )


def _by_severity_then_host(row: FindingRow) -> tuple[int, str, str, str, datetime]:
    return (severity_rank(row.severity), row.where, row.check, row.subject, row.first_seen_at)


BACKUP_RUN_KINDS = ("backup", "drill")
NO_END = "no end was recorded: the run is still going, or its process died"


def _verification_problem(v: BackupVerification) -> str:
    return f"backup of {v.system} failed verification {v.id}: {v.verdict.removeprefix('FAILED: ')}"


def _host_problems(session: Session, run_ids: Sequence[int]) -> dict[int, list[str]]:
    """Per run: the hosts it could not inspect, with why."""
    if not run_ids:
        return {}
    rows = session.exec(
        select(HostResult, Host)
        .join(Host, col(Host.id) == col(HostResult.host_id))
        .where(col(HostResult.run_id).in_(run_ids))
        .order_by(col(Host.name))
    ).all()
    problems: dict[int, list[str]] = {}
    for result, host in rows:
        if result.reachable and not result.error:
            continue
        what = "could not be inspected" if not result.reachable else "inspection incomplete"
        why = result.error or result.error_kind or "no reason recorded"
        problems.setdefault(result.run_id, []).append(f"host {host.name} {what}: {why}")
    return problems


def _pending_gates(
    session: Session, flow_run_ids: Sequence[str], zone: tzinfo
) -> dict[str, list[str]]:
    """Per flow run: the approval gates it still waits on (a run that waits has no end yet)."""
    if not flow_run_ids:
        return {}
    gates = session.exec(
        select(Approval)
        .where(
            col(Approval.decision).is_(None),
            or_(
                col(Approval.flow_run_id).in_(flow_run_ids),
                col(Approval.parent_flow_run_id).in_(flow_run_ids),
            ),
        )
        .order_by(col(Approval.requested_at))
    ).all()
    waiting: dict[str, list[str]] = {}
    for gate in gates:
        run = gate.parent_flow_run_id if gate.parent_flow_run_id in flow_run_ids else None
        since = format_dt(gate.requested_at.astimezone(zone))
        waiting.setdefault(run or gate.flow_run_id, []).append(
            f"waiting for approval (gate {gate.id}, {gate.gate}) since {since}"
        )
    return waiting


_Dated = TypeVar("_Dated", InspectionRun, BackupVersion, Approval)


def _in_period(
    session: Session,
    model: type[_Dated],
    at: datetime,
    contract_id: int | None,
    start: datetime,
    end: datetime,
) -> Sequence[_Dated]:
    """The contract's rows of ``model`` whose time ``at`` (a column of it) falls in
    ``[start, end)``, oldest first."""
    return session.exec(
        select(model)
        .where(model.contract_id == contract_id, col(at) >= start, col(at) < end)
        .order_by(col(at), col(model.id))
    ).all()


def _runs(
    session: Session,
    contract_id: int,
    start: datetime,
    end: datetime,
    zone: tzinfo,
    verifications: Sequence[BackupVerification],
) -> list[RunRow]:
    runs = _in_period(session, InspectionRun, InspectionRun.started_at, contract_id, start, end)
    hosts = _host_problems(session, [r.id for r in runs if r.id is not None])
    waiting = _pending_gates(session, [r.flow_run_id for r in runs if r.flow_run_id], zone)
    rows = []
    for run in runs:
        assert run.id is not None
        problems = list(hosts.get(run.id, []))
        problems += [
            _verification_problem(v) for v in verifications if v.run_id == run.id and not v.good
        ]
        if run.status == RunStatus.RUNNING:
            problems += waiting.get(run.flow_run_id or "", [NO_END])
        rows.append(
            RunRow(
                id=run.id,
                kind=run.kind,
                status=str(run.status),
                started_at=run.started_at.astimezone(zone),
                finished_at=None if run.finished_at is None else run.finished_at.astimezone(zone),
                requested_by=run.requested_by,
                window=run.window,
                report_path=run.report_path,
                problems=tuple(problems),
            )
        )
    return rows


def _tallies(runs: Iterable[RunRow]) -> list[RunTally]:
    by_kind: dict[str, dict[str, list[int]]] = {}
    for run in runs:
        by_kind.setdefault(run.kind, {}).setdefault(run.verdict, []).append(run.id)
    return [
        RunTally(
            kind=kind,
            completed=tuple(v.get("completed", [])),
            with_failures=tuple(v.get("completed with failures", [])),
            failed=tuple(v.get("failed", [])),
            cancelled=tuple(v.get("cancelled", [])),
            unfinished=tuple(v.get("not finished", [])),
        )
        for kind, v in sorted(by_kind.items(), key=lambda kv: process_name(kv[0]))
    ]


def _findings(
    session: Session, contract_id: int, start: datetime, end: datetime, zone: tzinfo
) -> tuple[list[FindingRow], list[FindingRow], list[FindingRow]]:
    """(opened, resolved, open at the end) of the period, host findings and backup ones."""
    opened_in = (col(Finding.first_seen_at) >= start) & (col(Finding.first_seen_at) < end)
    resolved_in = (col(Finding.resolved_at) >= start) & (col(Finding.resolved_at) < end)
    open_at_end = (col(Finding.first_seen_at) < end) & or_(
        col(Finding.status) == FindingStatus.OPEN, col(Finding.resolved_at) >= end
    )
    rows = session.exec(
        select(Finding, Host)
        .join(Host, col(Host.id) == col(Finding.host_id), isouter=True)
        .where(Finding.contract_id == contract_id, or_(opened_in, resolved_in, open_at_end))
    ).all()
    opened: list[FindingRow] = []
    resolved: list[FindingRow] = []
    still: list[FindingRow] = []
    for finding, host in rows:
        if start <= finding.first_seen_at < end:
            opened.append(_finding_row(finding, host, zone))
        if finding.resolved_at is not None and start <= finding.resolved_at < end:
            resolved.append(_finding_row(finding, host, zone))
        if finding.first_seen_at < end and (
            finding.status == FindingStatus.OPEN
            or (finding.resolved_at is not None and finding.resolved_at >= end)
        ):
            still.append(_finding_row(finding, host, zone, end_utc=end))
    opened.sort(key=_by_severity_then_host)
    resolved.sort(key=_by_severity_then_host)
    still.sort(key=lambda r: (severity_rank(r.severity), r.first_seen_at, r.where, r.check))
    return opened, resolved, still


def _severity_tallies(
    opened: Sequence[FindingRow], resolved: Sequence[FindingRow], still: Sequence[FindingRow]
) -> list[SeverityTally]:
    seen = {r.severity for r in (*opened, *resolved, *still)}
    ordered = list(SEVERITIES) + sorted(seen - set(SEVERITIES))
    return [
        SeverityTally(
            severity=sev,
            opened=sum(r.severity == sev for r in opened),
            resolved=sum(r.severity == sev for r in resolved),
            open_at_end=sum(r.severity == sev for r in still),
        )
        for sev in ordered
    ]


def _host_tallies(
    opened: Sequence[FindingRow], resolved: Sequence[FindingRow], still: Sequence[FindingRow]
) -> list[HostTally]:
    where = sorted({r.where for r in (*opened, *resolved, *still)})
    return [
        HostTally(
            host=w,
            opened=sum(r.where == w for r in opened),
            resolved=sum(r.where == w for r in resolved),
            open_at_end=sum(r.where == w for r in still),
        )
        for w in where
    ]


def backup_verifications(
    *, session: Session, contract_id: int, start: datetime, end: datetime, zone: tzinfo = UTC
) -> list[BackupVerification]:
    """Every backup verification (and drill) recorded for the contract in ``[start, end)``,
    oldest first, each tied to the run that made it.

    A verification belongs to the backup run with its flow run id; one recorded outside a
    flow run belongs to the contract's backup run whose time span holds it.
    """
    versions = _in_period(
        session, BackupVersion, BackupVersion.verified_at, contract_id, start, end
    )
    if not versions:
        return []
    runs = session.exec(
        select(InspectionRun).where(
            InspectionRun.contract_id == contract_id,
            col(InspectionRun.kind).in_(BACKUP_RUN_KINDS),
            col(InspectionRun.started_at) < end,
        )
    ).all()
    by_flow_run = {r.flow_run_id: r.id for r in runs if r.flow_run_id}

    def run_of(v: BackupVersion) -> int | None:
        if v.flow_run_id:
            return by_flow_run.get(v.flow_run_id)
        spans = [
            r
            for r in runs
            if r.started_at <= v.verified_at
            and (r.finished_at is None or v.verified_at <= r.finished_at)
            and r.kind == ("drill" if v.drill else "backup")
        ]
        return max(spans, key=lambda r: r.started_at).id if spans else None

    out = []
    for v in versions:
        assert v.id is not None
        out.append(
            BackupVerification(
                id=v.id,
                system=v.system,
                kind=v.kind,
                backup=v.backup,
                taken_at=None if v.taken_at is None else v.taken_at.astimezone(zone),
                verified_at=v.verified_at.astimezone(zone),
                outcome=v.outcome,
                fault=v.fault,
                reason=v.reason,
                drill=v.drill,
                run_id=run_of(v),
            )
        )
    return out


def _approvals(
    session: Session, contract: Contract, start: datetime, end: datetime, zone: tzinfo
) -> ApprovalSummary:
    figures = gate_report(session=session, contract_code=contract.code, since=start, until=end)
    gates = _in_period(session, Approval, Approval.requested_at, contract.id, start, end)
    # Same selection as gate_report: a revision gate is the engineer's, not an approver's.
    gates = [g for g in gates if not g.gate.endswith("-revision")]
    escalated: set[int] = set()
    if gates:
        escalated = {
            e
            for e in session.exec(
                select(ApprovalEvent.approval_id).where(
                    ApprovalEvent.kind == "escalated",
                    col(ApprovalEvent.approval_id).in_([g.id for g in gates]),
                )
            ).all()
            if e is not None
        }
    rows = []
    for g in gates:
        assert g.id is not None
        rows.append(
            GateRow(
                id=g.id,
                gate=g.gate,
                subject=g.subject,
                requested_at=g.requested_at.astimezone(zone),
                decided_at=None if g.decided_at is None else g.decided_at.astimezone(zone),
                decision=g.decision,
                approver=g.approver,
                escalated=g.id in escalated,
            )
        )
    return ApprovalSummary(
        times=tuple(
            ApproverTimes(t.approver, t.decisions, t.median, t.p90, t.longest)
            for t in figures.times
            if t.contract == contract.code
        ),
        rows=tuple(rows),
    )


RUN_KINDS: Mapping[str, str] = {
    "inspection": "inspection",
    "recheck": "recheck",
    "backup_verification": "backup",
    "drill": "drill",
}
"""Process key -> the kind of run its flow records; processes not listed record no run."""
MATCH_BEFORE = timedelta(hours=1)
MATCH_AFTER = timedelta(hours=24)


def checkable(due: Sequence[PlannedRun], now: datetime) -> list[PlannedRun]:
    """The planned runs whose run should be on record by ``now``, by time: not skipped, of a
    process that records runs, and due."""
    return sorted(
        (p for p in due if not p.skipped and p.key in RUN_KINDS and p.at <= now),
        key=lambda p: (p.at, p.key),
    )


def missed_runs(
    due: Sequence[PlannedRun], runs: Sequence[RunRow], now: datetime
) -> list[PlannedRun]:
    """The planned runs (due by ``now``) with no recorded run of their process. Pure.

    A run of the process's kind started from an hour before to a day after the planned time
    (a late start, a retry, a run started by hand) counts for it; each run counts once.
    Skipped runs and processes that record no run are never missed.
    """
    by_start = sorted(runs, key=lambda r: (r.started_at, r.id))
    used: set[int] = set()
    missed = []
    for slot in checkable(due, now):
        kind = RUN_KINDS[slot.key]
        match = next(
            (
                r
                for r in by_start
                if r.id not in used
                and r.kind == kind
                and slot.at - MATCH_BEFORE <= r.started_at < slot.at + MATCH_AFTER
            ),
            None,
        )
        if match is None:
            missed.append(slot)
        else:
            used.add(match.id)
    return missed


def build_service_report(
    *,
    session: Session,
    contract_code: str,
    kind: PeriodKind,
    start: date,
    end: date,
    plan: PeriodPlan | None = None,
    due: Sequence[PlannedRun] = (),
    generated_at: datetime | None = None,
    flow_run_id: str | None = None,
) -> ServiceReport:
    """Gather the contract's records of ``[start, end)`` into a :class:`ServiceReport`.

    ``start`` and ``end`` are local dates of the contract's timezone, ``end`` exclusive.
    Runs, findings (of hosts and of backups), backup verifications and approval gates are
    read from their tables; a run that completed while a backup it verified failed, or a host
    it could not inspect, counts as completed *with failures*. ``plan`` is the next period's
    plan as the caller computed it from the cadences; ``due`` what they planned for this
    period, to find planned runs that never happened. Reads only, writes nothing. Raises
    :class:`RecordNotFound` for an unknown contract and :class:`ValueError` for an empty
    period.
    """
    if end <= start:
        raise ValueError(f"empty period: {start} – {end}")
    contract = session.exec(select(Contract).where(Contract.code == contract_code)).first()
    if contract is None or contract.id is None:
        raise RecordNotFound(f"no contract {contract_code!r}")
    customer = session.get(Customer, contract.customer_id)
    assert customer is not None
    zone = contract_zone(contract.timezone)
    start_utc, end_utc = local_midnight(start, zone), local_midnight(end, zone)

    backups = backup_verifications(
        session=session, contract_id=contract.id, start=start_utc, end=end_utc, zone=zone
    )
    runs = _runs(session, contract.id, start_utc, end_utc, zone, backups)
    opened, resolved, still = _findings(session, contract.id, start_utc, end_utc, zone)
    next_start, next_end = next_period(kind, end)
    generated = (generated_at or utcnow()).astimezone(zone)
    in_period = [replace(p, at=p.at.astimezone(zone)) for p in due if start_utc <= p.at < end_utc]
    plan = plan or PeriodPlan()
    plan = replace(
        plan,
        runs=tuple(
            sorted(
                (replace(p, at=p.at.astimezone(zone)) for p in plan.runs),
                key=lambda p: (p.at, p.process),
            )
        ),
    )
    return ServiceReport(
        customer=CustomerInfo(code=customer.code, name=customer.name),
        contract=ContractInfo(code=contract.code, name=contract.name, timezone=contract.timezone),
        kind=kind,
        label=period_label(kind, start),
        start=start,
        end=end,
        runs=tuple(runs),
        run_tallies=tuple(_tallies(runs)),
        opened=tuple(opened),
        resolved=tuple(resolved),
        open_at_end=tuple(still),
        by_severity=tuple(_severity_tallies(opened, resolved, still)),
        by_host=tuple(_host_tallies(opened, resolved, still)),
        backups=tuple(backups),
        approvals=_approvals(session, contract, start_utc, end_utc, zone),
        next_start=next_start,
        next_end=next_end,
        plan=plan,
        generated_at=generated,
        due=tuple(checkable(in_period, generated)),
        missed=tuple(missed_runs(in_period, runs, generated)),
        backup_sources=tuple(
            str(s.get("system")) for s in contract.backup_sources or () if s.get("system")
        ),
        flow_run_id=flow_run_id,
    )


# ---------------------------------------------------------------------------------------------
# Rendering

_KIND_TITLE = {"month": "Monthly", "quarter": "Quarterly", "year": "Annual"}


def report_title(report: ServiceReport) -> str:
    """``Monthly service report 2026-11``."""
    return f"{_KIND_TITLE.get(report.kind, '')} service report {report.label}".strip()


def render_service_report_html(
    report: ServiceReport, templates_dir: Path, prefect_ui_url: str | None = None
) -> str:
    """The report as one self-contained printable HTML page (inline CSS, no external assets).

    Rendered from ``report/service_report.html.j2`` with autoescaping and ``StrictUndefined``.
    With ``prefect_ui_url`` and a flow run id the footer links the flow run.
    """
    template = template_env(Path(templates_dir), html=True).get_template(REPORT_TEMPLATE)
    return template.render(
        report=report,
        title=report_title(report),
        no_backups=NO_BACKUPS,
        no_plan=NO_PLAN,
        flow_run_url=run_url(prefect_ui_url, report.flow_run_id),
    )


def _refs(refs: Sequence[str]) -> str:
    return ", ".join(refs) if refs else "none"


def plan_when(run: PlannedRun) -> str:
    """``2026-12-08 02:00 CET``."""
    return format_dt(run.at)


def render_service_report_markdown(
    report: ServiceReport, report_url: str | Path | None = None
) -> str:
    """A Markdown summary for a Prefect artifact, linking the full report when given.

    Every figure names the records it counts. Every value from the inventory or a host goes
    through ``md_escape``, so ``|`` or a line break in a finding cannot break the tables.
    """
    a = report.approvals
    lines = [
        f"# {report_title(report)}: {md_escape(report.contract.code)} · "
        f"{md_escape(report.customer.name)}",
        "",
        f"- Period: {report.period_text} ({md_escape(report.contract.timezone)})",
    ]
    lines += [f"- {f.label.capitalize()}: {f.count} ({_refs(f.refs)})" for f in report.figures]
    lines.append(
        f"- Of the approval gates: {a.escalations} escalated, {a.expiries} expired, "
        f"{a.pending} pending"
    )
    if not report.backups:
        lines.append(f"- Backups: {NO_BACKUPS}")
    if report.unverified_sources:
        lines.append(
            "- Backup sources with no verification in the period: "
            + ", ".join(md_escape(s) for s in report.unverified_sources)
        )
    lines.append(f"- Planned next period ({report.next_period_text}): {len(report.planned)} run(s)")
    if report_url is not None:
        lines += ["", f"[Open the full report]({link_target(report_url)})"]
    if report.runs:
        lines += [
            "",
            "## Runs",
            "",
            "| Run | Process | Started | Outcome | What went wrong |",
            "|---:|---|---|---|---|",
        ]
        lines += [
            f"| {r.id} | {md_escape(r.process)} | {format_dt(r.started_at)} | "
            f"{md_escape(r.verdict)} | {md_escape('; '.join(r.problems))} |"
            for r in report.runs
        ]
    if report.missed:
        lines += ["", "## Planned but not run", ""]
        lines += [
            f"- {md_escape(p.label)} ({md_escape(p.cadence)}): no run recorded"
            for p in report.missed
        ]
    if report.backups:
        lines += [
            "",
            "## Backup verifications",
            "",
            "| Verification | System | Verified | Outcome | Run |",
            "|---:|---|---|---|---:|",
        ]
        lines += [
            f"| {b.id} | {md_escape(b.system)}{' (drill)' if b.drill else ''} | "
            f"{format_dt(b.verified_at)} | {md_escape(b.verdict)} | {b.run_id or '—'} |"
            for b in report.backups
        ]
    lines += [
        "",
        "## Findings by severity",
        "",
        "| Severity | Opened | Resolved | Open at end |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {md_escape(t.severity)} | {t.opened} | {t.resolved} | {t.open_at_end} |"
        for t in report.by_severity
    ]
    if report.open_at_end:
        lines += [
            "",
            "## Open at the end of the period",
            "",
            "| Finding | Severity | Where | Check | Subject | Message | Open for |",
            "|---:|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {f.id} | {md_escape(f.severity)} | {md_escape(f.where)} | {md_escape(f.check)} | "
            f"{md_escape(f.subject)} | {md_escape(f.message)} | {f.age_text} |"
            for f in report.open_at_end
        ]
    if a.times:
        lines += [
            "",
            "## Approval response times",
            "",
            "| Approver | Decisions | Median | 90th percentile | Longest |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {md_escape(t.approver)} | {t.decisions} | {t.median_text} | {t.p90_text} | "
            f"{t.longest_text} |"
            for t in a.times
        ]
    lines += ["", "## Planned next period", ""]
    if report.plan.runs:
        lines += ["| When | Process | Cadence | Note |", "|---|---|---|---|"]
        lines += [
            f"| {'~~' + plan_when(p) + '~~' if p.skipped else plan_when(p)} | "
            f"{md_escape(p.process)} | {md_escape(p.cadence)} | "
            f"{md_escape('; '.join(p.notes))} |"
            for p in report.plan.runs
        ]
    else:
        lines.append(NO_PLAN)
    if report.plan.blackouts:
        lines += ["", "Blackout days: " + md_escape("; ".join(report.plan.blackouts))]
        if report.plan.policy:
            lines += ["", md_escape(report.plan.policy)]
    if report.plan_note:
        lines += ["", f"_{md_escape(report.plan_note)}_"]
    return "\n".join(lines) + "\n"


def service_report_subject(report: ServiceReport) -> str:
    """One-line subject: contract, customer, period and the headline figures."""
    subject = (
        f"[upkeep] {report_title(report)} {report.contract.code} ({report.customer.name}): "
        f"{report.runs_total} run(s) ({report.runs_failed} not clean), "
        f"{len(report.backups_failed)} failed backup verification(s), "
        f"{len(report.opened)} finding(s) opened, "
        f"{len(report.resolved)} resolved, {len(report.open_at_end)} open"
    )
    # Inventory text goes into a header: no line breaks, whatever the inventory holds.
    return " ".join(subject.split())


def render_service_report_email(
    report: ServiceReport, report_path: str | Path, templates_dir: Path
) -> tuple[str, str, str]:
    """(subject, text, html) of the mail that carries the report as an attachment.

    From ``email/service_report.txt.j2`` and ``.html.j2``; the HTML is autoescaped, both use
    ``StrictUndefined``.
    """
    context: dict[str, Any] = {
        "report": report,
        "title": report_title(report),
        "report_name": Path(report_path).name,
        "no_backups": NO_BACKUPS,
    }
    text = template_env(Path(templates_dir), html=False).get_template(EMAIL_TEXT_TEMPLATE)
    html = template_env(Path(templates_dir), html=True).get_template(EMAIL_HTML_TEMPLATE)
    return service_report_subject(report), text.render(**context), html.render(**context)


# ---------------------------------------------------------------------------------------------
# Saving


def service_report_path(*, report_dir: Path, contract_code: str, label: str) -> Path:
    """``<report_dir>/<contract>/<year>/service-report-<contract>-<label>.html``."""
    code, safe_label = safe_name(contract_code), safe_name(label)
    return Path(report_dir) / code / label[:4] / f"service-report-{code}-{safe_label}.html"


def save_service_report(html: str, *, report_dir: Path, contract_code: str, label: str) -> Path:
    """Write ``html`` to :func:`service_report_path` atomically and return the path.

    Written to a temporary file in the same directory and renamed over the target, so a
    reader never sees half a report and a rerun for the same period replaces it whole.
    """
    target = service_report_path(report_dir=report_dir, contract_code=contract_code, label=label)
    write_atomic(target, html)
    log.info("service report written to %s", target)
    return target
