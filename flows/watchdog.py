"""The approval watchdog: escalates and expires gates that wait too long.

A suspended run executes no code while it waits, so this small flow runs on an interval
deployment (``upkeep serve``) and acts on every pending gate that is due. Each action is
recorded as an event first and is taken once: running the watchdog again sends no second
escalation and ends no run twice. Mail that fails is retried by the next run.

It also keeps gates honest about their runs: a gate whose run ended (cancelled, crashed,
deleted) is closed with the reason; an answer planted under a waiting run's open form (which
would make the genuine answer fail with 409) is removed; a plan-revision step expires after
``approval_timeout_hours`` like any gate, in deployment runs too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from prefect import flow, get_run_logger
from pydantic import BaseModel
from sqlmodel import Session, col, select

from upkeep.db import engine_for, session_scope
from upkeep.domain.contract import GatePolicy
from upkeep.flows.approvals import (
    ApprovalRequest,
    Person,
    clear_planted_answer,
    close_gates_of_run,
    deciders,
    ended_state,
    expire_gate,
    expiry_reason,
    send_codes,
)
from upkeep.models import Approval, ApprovalEvent, Contract, utcnow
from upkeep.settings import get_settings
from upkeep.tasks.gates import (
    log_event,
)


class WatchdogReport(BaseModel):
    escalated: list[int] = []
    expired: list[int] = []
    runs_ended: list[int] = []
    notified: list[int] = []
    closed: list[int] = []
    """Gates closed because their run ended without a decision."""
    planted: list[int] = []
    """Gates whose open form had an answer planted without a resume (removed)."""


def due(requested_at: datetime, hours: float | None, now: datetime) -> bool:
    return hours is not None and now - requested_at >= timedelta(hours=hours)


def _has_event(db: Session, approval_id: int, kind: str) -> bool:
    return (
        db.exec(
            select(ApprovalEvent).where(
                ApprovalEvent.approval_id == approval_id, ApprovalEvent.kind == kind
            )
        ).first()
        is not None
    )


def _request(gate: Approval, contract: Contract) -> ApprovalRequest:
    backup = contract.backup_approver
    return ApprovalRequest(
        gate=gate.gate,
        key=gate.gate_key or gate.gate,
        contract=contract.code,
        contract_id=contract.id,
        subject=gate.subject,
        evidence=gate.evidence,
        approvers=[Person(**p) for p in contract.approvers],
        backup_approver=Person(**backup) if backup else None,
        requested_by=gate.requested_by,
        policy=GatePolicy.model_validate(gate.policy or {}),
        timezone=contract.timezone,
    )


def run_end_reason(flow_run_id: str) -> str | None:
    """Why the run of a pending gate can no longer answer it, or None while it can."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            state = client.read_flow_run(UUID(flow_run_id)).state
        except ObjectNotFound:
            return "its flow run no longer exists"
    if state is None or not state.is_final():
        return None
    return f"its flow run ended ({ended_state(state)})"


def end_run(flow_run_id: str, reason: str) -> None:
    """Put the waiting run in a terminal state that says why (the API's own cancel)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
        if state is not None and state.is_final():
            return  # it ended by itself (an interactive run's own deadline)
        client.set_flow_run_state(UUID(flow_run_id), Cancelled(message=reason), force=True)


@flow(name="approval-watchdog", flow_run_name="approval watchdog")
def approval_watchdog(now: datetime | None = None) -> WatchdogReport:
    """Escalate and expire every pending gate that is due; end expired runs; send notices."""
    from upkeep.tasks.notify import deliver_pending

    logger = get_run_logger()
    settings = get_settings()
    now = now or utcnow()
    report = WatchdogReport()
    engine = engine_for(settings.db_url)
    with session_scope(engine) as db:
        pending: list[tuple[int, ApprovalRequest, datetime, str]] = []
        for gate, contract in db.exec(
            select(Approval, Contract)
            .join(Contract, col(Contract.id) == col(Approval.contract_id))
            .where(col(Approval.decision).is_(None), col(Approval.gate_key).is_not(None))
        ):
            assert gate.id is not None
            pending.append((gate.id, _request(gate, contract), gate.requested_at, gate.flow_run_id))
        expired_unended = [
            (g.id, g.flow_run_id, g.comment or "approval gate expired")
            for g in db.exec(select(Approval).where(Approval.decision == "expired"))
            if g.id is not None and not _has_event(db, g.id, "run_ended")
        ]
    for gate_id, request, requested_at, run_id in pending:
        policy = request.policy
        try:
            ended = run_end_reason(run_id)
            planted = ended is None and clear_planted_answer(run_id)
        except Exception as exc:  # noqa: BLE001 - the API may be away; the next run retries
            logger.error("could not read flow run %s of gate %s: %s", run_id, gate_id, exc)
            ended, planted = None, False
        if ended is not None:
            if close_gates_of_run(run_id, f"closed without a decision: {ended}"):
                report.closed.append(gate_id)
                logger.warning("gate %s closed: %s", gate_id, ended)
            continue
        if planted:
            report.planted.append(gate_id)
            logger.warning("gate %s: removed an answer planted without a resume", gate_id)
        if due(requested_at, policy.expire_after_hours, now):
            reason = expiry_reason(policy, requested_at)
            if expire_gate(gate_id, request, reason):
                report.expired.append(gate_id)
                logger.warning("gate %s expired: %s", gate_id, request.subject)
                expired_unended.append((gate_id, run_id, reason))
            continue
        if request.gate.endswith("-revision"):
            continue  # the engineer's step: it expires, but has no codes and no escalation
        with session_scope(engine) as db:
            escalate = (
                due(requested_at, policy.escalate_after_hours, now)
                and request.backup_approver is not None
                and not _has_event(db, gate_id, "escalated")
            )
            if escalate:
                assert request.backup_approver is not None
                log_event(
                    session=db,
                    approval_id=gate_id,
                    kind="escalated",
                    actor=request.backup_approver.name,
                    detail=f"no decision after {policy.escalate_after_hours:g} h",
                )
            escalated = escalate or _has_event(db, gate_id, "escalated")
        if escalate:
            report.escalated.append(gate_id)
            logger.warning("gate %s escalated to %s", gate_id, request.backup_approver)
        # Sends a code to whoever may answer and has none yet: the backup approver after
        # escalation, anyone whose earlier mail failed or whose code was replaced.
        for person, role in deciders(request, escalated):
            if send_codes(gate_id, request, [person], role, run_id):
                report.notified.append(gate_id)
    for gate_id, run_id, reason in expired_unended:
        try:
            end_run(run_id, reason)
        except Exception as exc:  # noqa: BLE001 - recorded, retried by the next watchdog run
            logger.error("could not end flow run %s: %s", run_id, exc)
            continue
        with session_scope(engine) as db:
            log_event(session=db, approval_id=gate_id, kind="run_ended", detail=reason)
        report.runs_ended.append(gate_id)
    with session_scope(engine) as db:
        delivery = deliver_pending(session=db, smtp=settings.smtp)
    if delivery.failed:
        logger.warning("notices kept in the outbox: %s", delivery.failed)
    return report
