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

from datetime import datetime

from prefect import flow, get_run_logger
from pydantic import BaseModel

from upkeep.db import open_session
from upkeep.domain.approvals import expiry_due, expiry_reason, roles
from upkeep.models import utcnow
from upkeep.settings import get_settings
from upkeep.tasks.approval_records import (
    close_gates_of_run,
    escalate_if_due,
    expire_gate,
    expired_unended,
    pending_gates,
    record_run_ended,
    send_codes,
)
from upkeep.tasks.notify import deliver_pending
from upkeep.tasks.pause import clear_planted_answer, end_run, run_end_reason


class WatchdogReport(BaseModel):
    escalated: list[int] = []
    expired: list[int] = []
    runs_ended: list[int] = []
    notified: list[int] = []
    closed: list[int] = []
    """Gates closed because their run ended without a decision."""
    planted: list[int] = []
    """Gates whose open form had an answer planted without a resume (removed)."""


@flow(name="approval-watchdog", flow_run_name="approval watchdog")
def approval_watchdog(now: datetime | None = None) -> WatchdogReport:
    """Escalate and expire every pending gate that is due; end expired runs; send notices."""
    logger = get_run_logger()
    settings = get_settings()
    now = now or utcnow()
    report = WatchdogReport()
    pending = pending_gates()
    to_end = expired_unended()
    for gate in pending:
        gate_id, request, run_id = gate.id, gate.request, gate.flow_run_id
        # 1. A gate whose run ended is closed; an answer planted under its form is removed.
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
        # 2. Expiry: close the gate, tell everyone, end its run below.
        if expiry_due(request.policy, gate.requested_at, now):
            reason = expiry_reason(request.policy, gate.requested_at)
            if expire_gate(gate_id, request, reason):
                report.expired.append(gate_id)
                logger.warning("gate %s expired: %s", gate_id, request.subject)
                to_end.append((gate_id, run_id, reason))
            continue
        if request.gate.endswith("-revision"):
            continue  # the engineer's step: it expires, but has no codes and no escalation
        # 3. Escalation to the backup approver, once.
        escalate, escalated = escalate_if_due(gate, now)
        if escalate:
            report.escalated.append(gate_id)
            logger.warning("gate %s escalated to %s", gate_id, request.backup_approver)
        # 4. A code to whoever may answer and has none yet: the backup approver after
        # escalation, anyone whose earlier mail failed or whose code was replaced.
        for person, role in roles(request, escalated):
            if send_codes(gate_id, request, [person], role, run_id):
                report.notified.append(gate_id)
    for gate_id, run_id, reason in to_end:
        try:
            end_run(run_id, reason)
        except Exception as exc:  # noqa: BLE001 - recorded, retried by the next watchdog run
            logger.error("could not end flow run %s: %s", run_id, exc)
            continue
        record_run_ended(gate_id, reason)
        report.runs_ended.append(gate_id)
    with open_session() as db:
        delivery = deliver_pending(session=db, smtp=settings.smtp, now=now)
    if delivery.failed:
        logger.warning("notices kept in the outbox: %s", delivery.failed)
    return report
