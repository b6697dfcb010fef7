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

A period is ``[start, end)`` in local dates of the contract's timezone: a run at 23:30 UTC
on 31 October belongs to November in Berlin.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, get_args

from sqlmodel import Session, col, or_, select

from models import (
    Approval,
    ApprovalEvent,
    Contract,
    Customer,
    Finding,
    FindingStatus,
    Host,
    InspectionRun,
    RunStatus,
    utcnow,
)
from tasks.gates import gate_report, human
from tasks.records import RecordNotFound
from tasks.reports import (
    SEVERITIES,
    ContractInfo,
    CustomerInfo,
    contract_zone,
    flow_run_url,
    format_dt,
    link_target,
    md_escape,
    safe_name,
    template_env,
    write_atomic,
)

log = logging.getLogger(__name__)

PeriodKind = Literal["month", "quarter", "year"]
PERIOD_KINDS: tuple[str, ...] = get_args(PeriodKind)
_MONTHS: dict[str, int] = {"month": 1, "quarter": 3, "year": 12}

PlannedInput = tuple[datetime, str, str]
"""(when, process, description) of one planned run, as the cadence engine computes them."""

REPORT_TEMPLATE = "report/service_report.html.j2"
EMAIL_TEXT_TEMPLATE = "email/service_report.txt.j2"
EMAIL_HTML_TEMPLATE = "email/service_report.html.j2"

NO_BACKUPS = "no backup verification recorded"


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


@dataclass(frozen=True)
class RunTally:
    """Runs of one kind in the period, by status."""

    kind: str
    completed: int
    failed: int
    cancelled: int
    running: int

    @property
    def total(self) -> int:
        return self.completed + self.failed + self.cancelled + self.running


@dataclass(frozen=True)
class FindingRow:
    id: int
    host: str
    check: str
    subject: str
    severity: str
    message: str
    recommendation: str
    first_seen_at: datetime
    resolved_at: datetime | None
    age: timedelta | None = None
    """For findings open at the end of the period: how long they had been open by then."""

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
    opened: int
    resolved: int
    open_at_end: int


@dataclass(frozen=True)
class BackupVerification:
    """One verified backup (filled by the backup-restore work; there is no table yet)."""

    host: str
    system: str
    backup_time: datetime
    verified_at: datetime
    outcome: str
    detail: str = ""


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


@dataclass(frozen=True)
class ApprovalSummary:
    gates: int
    escalations: int
    expiries: int
    pending: int
    times: tuple[ApproverTimes, ...]
    rows: tuple[GateRow, ...]


@dataclass(frozen=True)
class PlannedRun:
    at: datetime
    process: str
    description: str


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
    planned: tuple[PlannedRun, ...]
    plan_note: str | None
    """Why the plan may be incomplete (no cadence engine yet, ...); None when it is not."""
    generated_at: datetime
    flow_run_id: str | None = None

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
    def runs_failed(self) -> int:
        return sum(t.failed for t in self.run_tallies)

    @property
    def runs_not_done(self) -> tuple[RunRow, ...]:
        """Runs that did not complete: failed, cancelled, or still running."""
        return tuple(r for r in self.runs if r.status != RunStatus.COMPLETED)

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


def _sev_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def _finding_row(
    finding: Finding, host: Host, zone: tzinfo, end_utc: datetime | None = None
) -> FindingRow:
    assert finding.id is not None
    return FindingRow(
        id=finding.id,
        host=host.name,
        check=finding.check,
        subject=finding.subject,
        severity=finding.severity,
        message=finding.message,
        recommendation=finding.recommendation,
        first_seen_at=finding.first_seen_at.astimezone(zone),
        resolved_at=None if finding.resolved_at is None else finding.resolved_at.astimezone(zone),
        age=None if end_utc is None else end_utc - finding.first_seen_at,
    )


def _by_severity_then_host(row: FindingRow) -> tuple[int, str, str, str, datetime]:
    return (_sev_rank(row.severity), row.host, row.check, row.subject, row.first_seen_at)


def _runs(
    session: Session, contract_id: int, start: datetime, end: datetime, zone: tzinfo
) -> list[RunRow]:
    runs = session.exec(
        select(InspectionRun)
        .where(
            InspectionRun.contract_id == contract_id,
            col(InspectionRun.started_at) >= start,
            col(InspectionRun.started_at) < end,
        )
        .order_by(col(InspectionRun.started_at), col(InspectionRun.id))
    ).all()
    rows = []
    for run in runs:
        assert run.id is not None
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
            )
        )
    return rows


def _tallies(runs: Iterable[RunRow]) -> list[RunTally]:
    counts: dict[str, dict[str, int]] = {}
    for run in runs:
        by_status = counts.setdefault(run.kind, {})
        by_status[run.status] = by_status.get(run.status, 0) + 1
    return [
        RunTally(
            kind=kind,
            completed=c.get(RunStatus.COMPLETED, 0),
            failed=c.get(RunStatus.FAILED, 0),
            cancelled=c.get(RunStatus.CANCELLED, 0),
            running=c.get(RunStatus.RUNNING, 0),
        )
        for kind, c in sorted(counts.items())
    ]


def _findings(
    session: Session, contract_id: int, start: datetime, end: datetime, zone: tzinfo
) -> tuple[list[FindingRow], list[FindingRow], list[FindingRow]]:
    """(opened, resolved, open at the end) of the period."""
    opened_in = (col(Finding.first_seen_at) >= start) & (col(Finding.first_seen_at) < end)
    resolved_in = (col(Finding.resolved_at) >= start) & (col(Finding.resolved_at) < end)
    open_at_end = (col(Finding.first_seen_at) < end) & or_(
        col(Finding.status) == FindingStatus.OPEN, col(Finding.resolved_at) >= end
    )
    rows = session.exec(
        select(Finding, Host)
        .join(Host, col(Host.id) == col(Finding.host_id))
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
    still.sort(key=lambda r: (_sev_rank(r.severity), r.first_seen_at, r.host, r.check))
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
    hosts = sorted({r.host for r in (*opened, *resolved, *still)})
    return [
        HostTally(
            host=h,
            opened=sum(r.host == h for r in opened),
            resolved=sum(r.host == h for r in resolved),
            open_at_end=sum(r.host == h for r in still),
        )
        for h in hosts
    ]


def backup_verifications(
    *, session: Session, contract_id: int, start: datetime, end: datetime
) -> list[BackupVerification]:
    """Backups verified for the contract in ``[start, end)``.

    Empty until the backup-restore verification records its results: the report keeps the
    section and says that no verification was recorded.
    """
    return []


def _cadence_engine() -> ModuleType | None:
    """``deployments.cadence`` when it is installed and complete, else None."""
    try:
        from deployments import cadence
    except ImportError:
        return None
    wanted = ("parse_cadence", "parse_blackouts", "planned_runs", "describe")
    return cadence if all(hasattr(cadence, name) for name in wanted) else None


NO_CADENCE_ENGINE = (
    "The contract has cadences, but the cadence engine is not installed: "
    "the plan for the next period could not be computed."
)


def next_period_plan(
    *,
    cadences: Mapping[str, Any],
    timezone: str,
    start: datetime,
    end: datetime,
    blackouts: object = None,
    policy: str = "next_allowed_day",
) -> tuple[list[PlannedInput], str | None]:
    """The runs ``cadences`` (process name -> cadence as written) plan for ``[start, end)``.

    Uses the cadence engine (``deployments.cadence``) when it is installed; returns the runs
    as ``(when, process, description)`` and a note saying what could not be planned (no
    engine, a cadence it refuses), or None. Runs a blackout skips are left out; moved runs
    say so. No cadences: nothing planned, no note.
    """
    if not cadences:
        return [], None
    engine = _cadence_engine()
    if engine is None:
        return [], NO_CADENCE_ENGINE
    problems: list[str] = []
    planned: list[PlannedInput] = []
    try:
        parsed_blackouts = engine.parse_blackouts(blackouts)
    except ValueError as exc:
        problems.append(f"blackouts: {exc}")
        parsed_blackouts = []
    for process, written in sorted(cadences.items()):
        try:
            cadence = engine.parse_cadence(written)
            runs = engine.planned_runs(cadence, timezone, parsed_blackouts, policy, start, end)
        except ValueError as exc:
            problems.append(f"{process}: {exc}")
            continue
        for run in runs:
            if run.skipped:
                continue
            description = engine.describe(cadence)
            if run.moved:
                moved_from = run.original.astimezone(contract_zone(timezone))
                reason = f": {run.reason}" if run.reason else ""
                description += f" (moved from {moved_from:%Y-%m-%d}, blackout{reason})"
            planned.append((run.at, str(process), description))
    note = "Not planned: " + "; ".join(problems) if problems else None
    return planned, note


def _approvals(
    session: Session, contract: Contract, start: datetime, end: datetime, zone: tzinfo
) -> ApprovalSummary:
    figures = gate_report(session=session, contract_code=contract.code, since=start, until=end)
    code = contract.code
    gates = session.exec(
        select(Approval)
        .where(
            Approval.contract_id == contract.id,
            col(Approval.requested_at) >= start,
            col(Approval.requested_at) < end,
        )
        .order_by(col(Approval.requested_at), col(Approval.id))
    ).all()
    # Same selection as gate_report: a revision gate is the engineer's, not an approver's.
    gates = [g for g in gates if not g.gate.endswith("-revision")]
    escalated: set[int] = set()
    if gates:
        escalated = set(
            session.exec(
                select(ApprovalEvent.approval_id).where(
                    ApprovalEvent.kind == "escalated",
                    col(ApprovalEvent.approval_id).in_([g.id for g in gates]),
                )
            ).all()
        )
    return ApprovalSummary(
        gates=figures.gates.get(code, 0),
        escalations=figures.escalations.get(code, 0),
        expiries=figures.expiries.get(code, 0),
        pending=figures.pending.get(code, 0),
        times=tuple(
            ApproverTimes(t.approver, t.decisions, t.median, t.p90, t.longest)
            for t in figures.times
            if t.contract == code
        ),
        rows=tuple(
            GateRow(
                gate=g.gate,
                subject=g.subject,
                requested_at=g.requested_at.astimezone(zone),
                decided_at=None if g.decided_at is None else g.decided_at.astimezone(zone),
                decision=g.decision,
                approver=g.approver,
                escalated=g.id in escalated,
            )
            for g in gates
        ),
    )


def build_service_report(
    *,
    session: Session,
    contract_code: str,
    kind: PeriodKind,
    start: date,
    end: date,
    planned: Sequence[PlannedInput] = (),
    plan_note: str | None = None,
    generated_at: datetime | None = None,
    flow_run_id: str | None = None,
) -> ServiceReport:
    """Gather the contract's records of ``[start, end)`` into a :class:`ServiceReport`.

    ``start`` and ``end`` are local dates of the contract's timezone, ``end`` exclusive.
    ``planned`` is the next period's plan, ``(when, process, description)`` each, as the
    caller computed it (the cadence engine); ``plan_note`` says why it may be incomplete.
    Reads only, writes nothing. Raises :class:`RecordNotFound` for an unknown contract and
    :class:`ValueError` for an empty period.
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

    runs = _runs(session, contract.id, start_utc, end_utc, zone)
    opened, resolved, still = _findings(session, contract.id, start_utc, end_utc, zone)
    backups = backup_verifications(
        session=session, contract_id=contract.id, start=start_utc, end=end_utc
    )
    next_start, next_end = next_period(kind, end)
    plan = sorted(
        (
            PlannedRun(at.astimezone(zone), process, description)
            for at, process, description in planned
        ),
        key=lambda p: (p.at, p.process),
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
        planned=tuple(plan),
        plan_note=plan_note,
        generated_at=(generated_at or utcnow()).astimezone(zone),
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
        flow_run_url=flow_run_url(prefect_ui_url, report.flow_run_id),
    )


def render_service_report_markdown(
    report: ServiceReport, report_url: str | Path | None = None
) -> str:
    """A Markdown summary for a Prefect artifact, linking the full report when given.

    Every value from the inventory or a host goes through ``md_escape``, so ``|`` or a line
    break in a finding cannot break the tables.
    """
    a = report.approvals
    lines = [
        f"# {report_title(report)}: {md_escape(report.contract.code)} · "
        f"{md_escape(report.customer.name)}",
        "",
        f"- Period: {report.period_text} ({md_escape(report.contract.timezone)})",
        f"- Runs: {report.runs_total} ({report.runs_failed} failed)",
        f"- Findings: {len(report.opened)} opened, {len(report.resolved)} resolved, "
        f"{len(report.open_at_end)} open at the end of the period",
        f"- Backups verified: {len(report.backups) if report.backups else NO_BACKUPS}",
        f"- Approval gates: {a.gates} ({a.escalations} escalated, {a.expiries} expired, "
        f"{a.pending} pending)",
        f"- Planned next period ({report.next_period_text}): {len(report.planned)} run(s)",
    ]
    if report_url is not None:
        lines += ["", f"[Open the full report]({link_target(report_url)})"]
    if report.runs:
        lines += ["", "## Runs", "", "| Started | Kind | Status | Finished |", "|---|---|---|---|"]
        lines += [
            f"| {format_dt(r.started_at)} | {md_escape(r.kind)} | {md_escape(r.status)} | "
            f"{format_dt(r.finished_at)} |"
            for r in report.runs
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
            "| Severity | Host | Check | Subject | Message | Open for |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {md_escape(f.severity)} | {md_escape(f.host)} | {md_escape(f.check)} | "
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
    if report.planned:
        lines += ["| When | Process | Description |", "|---|---|---|"]
        lines += [
            f"| {format_dt(p.at)} | {md_escape(p.process)} | {md_escape(p.description)} |"
            for p in report.planned
        ]
    else:
        lines.append("Nothing is scheduled.")
    if report.plan_note:
        lines += ["", f"_{md_escape(report.plan_note)}_"]
    return "\n".join(lines) + "\n"


def service_report_subject(report: ServiceReport) -> str:
    """One-line subject: contract, customer, period and the headline figures."""
    subject = (
        f"[upkeep] {report_title(report)} {report.contract.code} ({report.customer.name}): "
        f"{report.runs_total} run(s), {len(report.opened)} finding(s) opened, "
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
