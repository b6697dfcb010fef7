"""Service reports: gather a contract's records of a period into a :class:`ServiceReport`.

The plans promise monthly work reports and quarterly and annual summaries: what was done and
what was not, the faults found and fixed, what is still open, the approvals and how fast they
came, and the plan for the next period. :func:`build_service_report` reads runs, host
results, findings of hosts and of backups, backup verifications and approval gates, and
returns pure data (:mod:`upkeep.domain.service_report`), every time already in the contract's
timezone; the figures are computed by :mod:`upkeep.domain.service_figures`, the page, the
artifact and the mail by :mod:`upkeep.tasks.service_report_render`. The next period's plan
(:class:`PeriodPlan`) is computed by the caller from the contract's cadences and blackouts:
this module does not schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, tzinfo
from typing import TypeVar

from sqlmodel import Session, col, or_, select

from upkeep.domain.contract import ContractView
from upkeep.domain.inspection_report import ContractInfo, CustomerInfo
from upkeep.domain.interfaces import MONITOR_RUN_KIND
from upkeep.domain.periods import PeriodKind, local_midnight, next_period, period_label
from upkeep.domain.report_time import contract_zone, format_dt
from upkeep.domain.service_figures import (
    by_severity_then_host,
    checkable,
    due_in,
    host_tallies,
    missed_runs,
    open_order,
    plan_in_zone,
    run_problems,
    run_tallies,
    severity_tallies,
)
from upkeep.domain.service_report import (
    ApprovalSummary,
    ApproverTimes,
    BackupVerification,
    FindingRow,
    GateRow,
    PeriodPlan,
    PlannedRun,
    RunRow,
    ServiceReport,
)
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
    utcnow,
)
from upkeep.tasks.gates import gate_report
from upkeep.tasks.records import RecordNotFound

BACKUP_RUN_KINDS = ("backup", "drill")


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
    in_period = due_in(due, start_utc, end_utc, zone)
    return ServiceReport(
        customer=CustomerInfo(code=customer.code, name=customer.name),
        contract=ContractInfo(code=contract.code, name=contract.name, timezone=contract.timezone),
        kind=kind,
        label=period_label(kind, start),
        start=start,
        end=end,
        runs=tuple(runs),
        run_tallies=tuple(run_tallies(runs)),
        opened=tuple(opened),
        resolved=tuple(resolved),
        open_at_end=tuple(still),
        by_severity=tuple(severity_tallies(opened, resolved, still)),
        by_host=tuple(host_tallies(opened, resolved, still)),
        backups=tuple(backups),
        approvals=_approvals(session, contract, start_utc, end_utc, zone),
        next_start=next_start,
        next_end=next_end,
        plan=plan_in_zone(plan or PeriodPlan(), zone),
        generated_at=generated,
        due=tuple(checkable(in_period, generated)),
        missed=tuple(missed_runs(in_period, runs, generated)),
        backup_sources=tuple(s.system for s in ContractView.of(contract).backup_sources),
        flow_run_id=flow_run_id,
    )


# --- what it is built from ---------------------------------------------------------------------


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
    # The interface monitor runs every few minutes: its probes are figures, not report rows.
    runs = [
        r
        for r in _in_period(
            session, InspectionRun, InspectionRun.started_at, contract_id, start, end
        )
        if r.kind != MONITOR_RUN_KIND
    ]
    hosts = _host_problems(session, [r.id for r in runs if r.id is not None])
    waiting = _pending_gates(session, [r.flow_run_id for r in runs if r.flow_run_id], zone)
    rows = []
    for run in runs:
        assert run.id is not None
        problems = run_problems(
            run.id,
            run.status,
            hosts.get(run.id, []),
            verifications,
            waiting.get(run.flow_run_id or ""),
        )
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
                problems=problems,
            )
        )
    return rows


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
    opened.sort(key=by_severity_then_host)
    resolved.sort(key=by_severity_then_host)
    still.sort(key=open_order)
    return opened, resolved, still


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
