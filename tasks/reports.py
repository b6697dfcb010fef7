"""Inspection reports: gather a run's records into an :class:`InspectionReport`.

:func:`build_inspection_report` reads the database and returns pure data
(:mod:`upkeep.domain.inspection_report`: scores, counts and rows), with every time already in
the contract's timezone. :mod:`upkeep.tasks.render` turns it into a printable page, a Prefect
Markdown artifact and the rows of a Prefect table artifact, and saves the page. Nothing here
renders or sends mail.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from sqlmodel import Session, col, or_, select

from upkeep.domain.inspection import PLAN_GATE
from upkeep.domain.inspection_report import (
    Changes,
    ContractInfo,
    CustomerInfo,
    FindingRow,
    FindingState,
    HostRow,
    InspectionReport,
    PlanApproval,
    PreviousRun,
    RunInfo,
    UnreachedHost,
    finding_sort_key,
    group_by_severity,
    host_score,
    measurement_row,
    overall_score,
    severity_counts,
)
from upkeep.domain.report_time import contract_zone
from upkeep.models import (
    Approval,
    Contract,
    Customer,
    Finding,
    FindingStatus,
    Host,
    InspectionRun,
    utcnow,
)
from upkeep.tasks.records import RecordNotFound, run_results


def build_inspection_report(
    *, session: Session, run_id: int, generated_at: datetime | None = None
) -> InspectionReport:
    """Gather run ``run_id`` into an :class:`InspectionReport`; reads only, writes nothing.

    Findings of the run are those it found first (``new``) and those it saw again
    (``persisting``, still open); ``changes.resolved`` are those it resolved. Built right after
    the run this is exactly what the run saw; built later, a finding's text is its latest.
    Raises :class:`RecordNotFound` for an unknown run.
    """
    run = session.get(InspectionRun, run_id)
    if run is None or run.id is None:
        raise RecordNotFound(f"no inspection run {run_id}")
    contract = session.get(Contract, run.contract_id)
    assert contract is not None
    customer = session.get(Customer, contract.customer_id)
    assert customer is not None
    zone = contract_zone(contract.timezone)

    hosts: list[HostRow] = []
    unreached: list[UnreachedHost] = []
    for result, host in run_results(session=session, run_id=run.id):
        measurements = tuple(measurement_row(m) for m in result.measurements)
        row = HostRow(
            name=host.name,
            address=host.address,
            port=host.port,
            role=host.role,
            system=host.system,
            reachable=result.reachable,
            error=result.error,
            error_kind=result.error_kind,
            score=host_score(result.measurements, result.reachable),
            counts=severity_counts(result.measurements),
            measurements=measurements,
            skipped=dict(result.skipped),
        )
        hosts.append(row)
        if not result.reachable:
            unreached.append(
                UnreachedHost(
                    name=host.name,
                    endpoint=row.endpoint,
                    reason=result.error or "not reached (no error recorded)",
                    error_kind=result.error_kind,
                )
            )

    new, persisting, resolved = _run_findings(session, run, zone)
    current = new + persisting
    return InspectionReport(
        customer=CustomerInfo(code=customer.code, name=customer.name),
        contract=ContractInfo(code=contract.code, name=contract.name, timezone=contract.timezone),
        run=RunInfo(
            id=run.id,
            kind=run.kind,
            status=str(run.status),
            window=run.window,
            started_at=_local(run.started_at, zone),
            finished_at=_local_opt(run.finished_at, zone),
            requested_by=run.requested_by,
            flow_run_id=run.flow_run_id,
        ),
        approval=_plan_approval(session, run, zone),
        hosts=tuple(hosts),
        findings=group_by_severity(current),
        changes=Changes(
            previous=_previous_run(session, run, zone),
            new=tuple(new),
            persisting=tuple(persisting),
            resolved=tuple(resolved),
        ),
        unreached=tuple(unreached),
        overall_score=overall_score([h.score for h in hosts]),
        generated_at=_local(generated_at or utcnow(), zone),
        counts=severity_counts(current),
    )


# --- what it is built from ---------------------------------------------------------------------


def _local(value: datetime, zone: tzinfo) -> datetime:
    return value.astimezone(zone)


def _local_opt(value: datetime | None, zone: tzinfo) -> datetime | None:
    return None if value is None else value.astimezone(zone)


def _finding_row(finding: Finding, host: Host, state: FindingState, zone: tzinfo) -> FindingRow:
    return FindingRow(
        host=host.name,
        check=finding.check,
        subject=finding.subject,
        severity=finding.severity,
        message=finding.message,
        evidence=finding.evidence,
        recommendation=finding.recommendation,
        first_seen_at=_local(finding.first_seen_at, zone),
        last_seen_at=_local(finding.last_seen_at, zone),
        state=state,
        resolved_at=_local_opt(finding.resolved_at, zone),
    )


def _plan_approval(session: Session, run: InspectionRun, zone: tzinfo) -> PlanApproval | None:
    if not run.flow_run_id:
        return None
    approval = session.exec(
        select(Approval)
        .where(
            or_(
                Approval.flow_run_id == run.flow_run_id,
                Approval.parent_flow_run_id == run.flow_run_id,
            ),
            Approval.gate == PLAN_GATE,
            Approval.decision == "approve",
        )
        .order_by(col(Approval.decided_at).desc(), col(Approval.id).desc())
    ).first()
    if approval is None:
        return None
    return PlanApproval(
        approver=approval.approver,
        decided_at=_local_opt(approval.decided_at, zone),
        comment=approval.comment,
    )


def _previous_run(session: Session, run: InspectionRun, zone: tzinfo) -> PreviousRun | None:
    prev = session.exec(
        select(InspectionRun)
        .where(
            InspectionRun.contract_id == run.contract_id,
            (col(InspectionRun.started_at) < run.started_at)
            | (
                (col(InspectionRun.started_at) == run.started_at) & (col(InspectionRun.id) < run.id)
            ),
        )
        .order_by(col(InspectionRun.started_at).desc(), col(InspectionRun.id).desc())
    ).first()
    if prev is None or prev.id is None:
        return None
    return PreviousRun(id=prev.id, kind=prev.kind, started_at=_local(prev.started_at, zone))


def _run_findings(
    session: Session, run: InspectionRun, zone: tzinfo
) -> tuple[list[FindingRow], list[FindingRow], list[FindingRow]]:
    """(new, persisting, resolved) findings of the run, each sorted worst first."""
    rows = session.exec(
        select(Finding, Host)
        .join(Host, col(Host.id) == col(Finding.host_id))
        .where(
            (col(Finding.run_id) == run.id)
            | (col(Finding.last_seen_run_id) == run.id)
            | (col(Finding.resolved_by_run_id) == run.id)
        )
    ).all()
    new: list[FindingRow] = []
    persisting: list[FindingRow] = []
    resolved: list[FindingRow] = []
    for finding, host in rows:
        if finding.resolved_by_run_id == run.id:
            resolved.append(_finding_row(finding, host, "resolved", zone))
        elif finding.run_id == run.id:
            new.append(_finding_row(finding, host, "new", zone))
        elif finding.status == FindingStatus.OPEN and finding.last_seen_run_id == run.id:
            persisting.append(_finding_row(finding, host, "persisting", zone))
    for group in (new, persisting, resolved):
        group.sort(key=finding_sort_key)
    return new, persisting, resolved
