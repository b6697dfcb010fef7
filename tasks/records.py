"""Writing and reading upkeep's records. Every function takes the session keyword-only.

These are plain functions so the CLI, flows and tests share them; flows wrap the few they need
as Prefect tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from upkeep.domain.checks.base import Thresholds
from upkeep.domain.contract import ContractView
from upkeep.domain.findings import Observed, reconcile, severity_rank
from upkeep.models import (
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


class RecordNotFound(LookupError):
    """A contract, host or run named by the caller does not exist (or is inactive)."""


def get_contract(*, session: Session, code: str, active_only: bool = True) -> Contract:
    contract = session.exec(select(Contract).where(Contract.code == code)).first()
    if contract is None:
        known = ", ".join(session.exec(select(Contract.code).order_by(Contract.code))) or "none"
        raise RecordNotFound(f"no contract {code!r} in the inventory (known: {known})")
    if active_only and not contract.active:
        raise RecordNotFound(f"contract {code!r} is no longer active (removed from the inventory)")
    return contract


def get_customer(*, session: Session, contract: Contract) -> Customer:
    customer = session.get(Customer, contract.customer_id)
    assert customer is not None
    return customer


def contract_thresholds(contract: Contract) -> Thresholds:
    """The contract's thresholds (``ContractView.of(contract).thresholds``)."""
    return ContractView.of(contract).thresholds


def hosts_in_scope(
    *, session: Session, contract: Contract, tags: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[Host]:
    """Active hosts of the contract carrying any of ``tags`` (all when empty), minus ``exclude``."""
    hosts = session.exec(
        select(Host)
        .where(Host.contract_id == contract.id, Host.active == True)  # noqa: E712
        .order_by(Host.name)
    ).all()
    wanted = set(tags)
    return [h for h in hosts if (not wanted or wanted & set(h.tags)) and h.name not in set(exclude)]


def find_hosts(*, session: Session, name: str, contract_code: str | None = None) -> list[Host]:
    query = select(Host).where(Host.name == name, Host.active == True)  # noqa: E712
    if contract_code:
        contract = get_contract(session=session, code=contract_code)
        query = query.where(Host.contract_id == contract.id)
    return list(session.exec(query).all())


def start_run(
    *,
    session: Session,
    contract: Contract,
    kind: str,
    flow_run_id: str | None = None,
    requested_by: str | None = None,
    window: str | None = None,
    plan: dict[str, Any] | None = None,
) -> InspectionRun:
    assert contract.id is not None
    run = InspectionRun(
        contract_id=contract.id,
        kind=kind,
        flow_run_id=flow_run_id,
        requested_by=requested_by,
        window=window,
        plan=plan or {},
    )
    session.add(run)
    session.flush()
    return run


def finish_run(
    *, session: Session, run_id: int, status: RunStatus, report_path: str | None = None
) -> InspectionRun:
    run = session.get(InspectionRun, run_id)
    if run is None:
        raise RecordNotFound(f"no inspection run {run_id}")
    run.status = status
    run.finished_at = utcnow()
    if report_path is not None:
        run.report_path = report_path
    session.add(run)
    return run


@dataclass(frozen=True)
class HostInspection:
    """Everything one host's inspection produced, ready to be stored."""

    host_id: int
    reachable: bool
    started_at: datetime
    finished_at: datetime
    facts: dict[str, Any]
    measurements: list[dict[str, Any]]
    skipped: dict[str, str]
    observed: list[Observed]
    evaluated_checks: list[str]
    error: str | None = None
    error_kind: str | None = None


def store_host_inspection(*, session: Session, run_id: int, result: HostInspection) -> HostResult:
    """Store one host's result and bring its findings up to date, in the caller's transaction."""
    run = session.get(InspectionRun, run_id)
    if run is None:
        raise RecordNotFound(f"no inspection run {run_id}")
    row = HostResult(
        run_id=run_id,
        host_id=result.host_id,
        reachable=result.reachable,
        facts=result.facts,
        measurements=result.measurements,
        skipped=result.skipped,
        error=result.error,
        error_kind=result.error_kind,
        started_at=result.started_at,
        finished_at=result.finished_at,
    )
    session.add(row)
    open_findings = {
        (f.check, f.subject): f
        for f in session.exec(
            select(Finding).where(
                Finding.host_id == result.host_id, Finding.status == FindingStatus.OPEN
            )
        )
    }
    plan = reconcile(open_findings, result.observed, result.evaluated_checks)
    now = result.finished_at
    for obs in plan.new:
        session.add(
            Finding(
                contract_id=run.contract_id,
                host_id=result.host_id,
                run_id=run_id,
                check=obs.check,
                subject=obs.subject,
                severity=obs.severity.value,
                message=obs.message,
                evidence=obs.evidence,
                recommendation=obs.recommendation,
                first_seen_at=now,
                last_seen_at=now,
                last_seen_run_id=run_id,
            )
        )
    for key, obs in plan.persisting.items():
        finding = open_findings[key]
        finding.severity = obs.severity.value
        finding.message = obs.message
        finding.evidence = obs.evidence
        finding.recommendation = obs.recommendation
        finding.last_seen_at = now
        finding.last_seen_run_id = run_id
        session.add(finding)
    for key in plan.resolved:
        finding = open_findings[key]
        finding.status = FindingStatus.RESOLVED
        finding.resolved_at = now
        finding.resolved_by_run_id = run_id
        session.add(finding)
    session.flush()
    return row


def list_findings(
    *, session: Session, contract: Contract, open_only: bool = False
) -> list[tuple[Finding, Host | None]]:
    """The contract's findings with their host (None for a finding about a backup)."""
    query = (
        select(Finding, Host)
        .join(Host, col(Host.id) == col(Finding.host_id), isouter=True)
        .where(Finding.contract_id == contract.id)
    )
    if open_only:
        query = query.where(Finding.status == FindingStatus.OPEN)
    rows = session.exec(query).all()
    return sorted(
        rows,
        key=lambda fh: (fh[1].name if fh[1] else "", severity_rank(fh[0].severity), fh[0].check),
    )


def run_results(*, session: Session, run_id: int) -> list[tuple[HostResult, Host]]:
    rows = session.exec(
        select(HostResult, Host)
        .join(Host, col(Host.id) == col(HostResult.host_id))
        .where(HostResult.run_id == run_id)
    ).all()
    return sorted(rows, key=lambda rh: rh[1].name)


def open_system_finding(
    *, session: Session, contract_id: int, check: str, subject: str
) -> Finding | None:
    """The open finding of ``check`` about ``subject`` that no host carries (a system's
    backups, an interface), if any."""
    return session.exec(
        select(Finding).where(
            Finding.contract_id == contract_id,
            col(Finding.host_id).is_(None),
            Finding.check == check,
            Finding.subject == subject,
            Finding.status == FindingStatus.OPEN,
        )
    ).first()


def system_finding(
    *,
    session: Session,
    run: InspectionRun,
    check: str,
    subject: str,
    severity: str,
    message: str,
    evidence: str,
    recommendation: str,
) -> Finding:
    """Open the finding of ``check`` about ``subject`` (no host), or refresh the open one: one
    finding however often a run sees the problem again."""
    assert run.id is not None
    now = utcnow()
    found = open_system_finding(
        session=session, contract_id=run.contract_id, check=check, subject=subject
    )
    if found is None:
        found = Finding(
            contract_id=run.contract_id,
            host_id=None,
            run_id=run.id,
            check=check,
            subject=subject,
            severity=severity,
            message=message,
            evidence=evidence,
            recommendation=recommendation,
            first_seen_at=now,
            last_seen_at=now,
            last_seen_run_id=run.id,
        )
    else:
        found.message, found.evidence = message, evidence
        found.last_seen_at, found.last_seen_run_id = now, run.id
    session.add(found)
    session.flush()
    return found


def resolve_system_finding(
    *, session: Session, run: InspectionRun, check: str, subject: str
) -> bool:
    """Resolve the open finding of ``check`` about ``subject`` by ``run``; False if none."""
    found = open_system_finding(
        session=session, contract_id=run.contract_id, check=check, subject=subject
    )
    if found is None:
        return False
    found.status = FindingStatus.RESOLVED
    found.resolved_at = utcnow()
    found.resolved_by_run_id = run.id
    session.add(found)
    return True
