"""The approval gate's records: open a gate once, read its facts, record each verdict once,
mail codes and notices, close it.

The rules live in :mod:`upkeep.domain.approvals` (pure); this module gathers the facts they
need from the database and writes down what they decided. Every write is keyed so a re-run of
the flow (a suspended run resuming from the top) records nothing twice: a gate is opened once
per (run, key), an answer is judged once per pause key (:func:`judge` replays the recorded
verdict), a code is mailed once per person per gate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prefect import get_run_logger
from sqlmodel import Session, col, select

from upkeep.db import open_session
from upkeep.domain.approval_form import format_deadline
from upkeep.domain.approvals import (
    DECISIONS,
    VERDICTS,
    Answer,
    ApprovalRequest,
    ApprovalResult,
    Decision,
    Person,
    Verdict,
    approved_by,
    code_recipients,
    ended_state,
    escalated,
    escalation_due,
    escalation_reason,
    notice_recipients,
    refusals,
    verdict,
)
from upkeep.domain.codes import hash_code, new_code
from upkeep.domain.contract import ContractView, GatePolicy
from upkeep.domain.links import new_token
from upkeep.domain.markup import md_escape
from upkeep.domain.naming import run_url
from upkeep.models import Approval, ApprovalCode, ApprovalEvent, Contract, utcnow
from upkeep.settings import get_settings
from upkeep.tasks.approval_links import add_link, drop_link, link_url, supersede_links
from upkeep.tasks.gates import close_gate, log_event, open_gate
from upkeep.tasks.notify import (
    DeliveryError,
    deliver_pending,
    queue_message,
    render_approval_email,
    render_gate_notice,
    send_now,
)

# --- reading --------------------------------------------------------------------------------


def open_gates(db: Session, flow_run_id: str) -> list[Approval]:
    """The gates of ``flow_run_id`` that no decision has closed yet."""
    return list(
        db.exec(
            select(Approval).where(
                Approval.flow_run_id == flow_run_id, col(Approval.decision).is_(None)
            )
        )
    )


def gate_events(db: Session, approval_id: int) -> list[ApprovalEvent]:
    """The gate's events in the order they were recorded."""
    return list(
        db.exec(
            select(ApprovalEvent)
            .where(ApprovalEvent.approval_id == approval_id)
            .order_by(col(ApprovalEvent.id))
        )
    )


@dataclass(frozen=True)
class GateState:
    """A gate as its records say now (what the gate loop needs each round)."""

    gate: Approval
    events: list[ApprovalEvent]

    @property
    def escalated(self) -> bool:
        return escalated(self.events)

    @property
    def approved_by(self) -> list[str]:
        return approved_by(self.events)

    @property
    def refusals(self) -> list[str]:
        return refusals(self.events)

    def result(self) -> ApprovalResult:
        gate = self.gate
        assert gate.id is not None and gate.decided_at is not None
        return ApprovalResult(
            approval_id=gate.id,
            decision=Decision(gate.decision or ""),
            approver=gate.approver or "",
            comment=gate.comment or "",
            decided_at=gate.decided_at,
        )


def gate_state(approval_id: int) -> GateState:
    with open_session() as db:
        gate = db.get(Approval, approval_id)
        assert gate is not None
        return GateState(gate, gate_events(db, approval_id))


def refusal_reasons(approval_id: int) -> list[str]:
    """Why earlier answers to this gate were refused, oldest first (shown on the next form)."""
    with open_session() as db:
        return refusals(gate_events(db, approval_id))


def ensure_gate(
    run_id: str,
    *,
    key: str,
    gate: str,
    subject: str,
    evidence: str,
    contract_id: int | None,
    requested_by: str | None = None,
    policy: GatePolicy | None = None,
) -> int:
    """The gate's Approval row, opened once per (run, key): a re-run finds the same one."""
    with open_session() as db:
        row = db.exec(
            select(Approval).where(Approval.flow_run_id == run_id, Approval.gate_key == key)
        ).first()
        if row is None:
            row = open_gate(
                session=db,
                flow_run_id=run_id,
                parent_flow_run_id=run_id,
                contract_id=contract_id,
                gate=gate,
                gate_key=key,
                subject=subject,
                evidence=evidence,
                requested_by=requested_by,
                policy=policy.model_dump() if policy else {},
            )
        assert row.id is not None
        return row.id


# --- verdicts -------------------------------------------------------------------------------


def _memo(db: Session, approval_id: int, attempt_key: str) -> Verdict | None:
    """The verdict already recorded for this answer (a re-run replays it, never re-judges)."""
    events = db.exec(
        select(ApprovalEvent).where(
            ApprovalEvent.approval_id == approval_id,
            ApprovalEvent.attempt_key == attempt_key,
            col(ApprovalEvent.kind).in_(sorted(VERDICTS)),
        )
    ).all()
    if not events:
        return None
    kinds = {e.kind: e for e in events}
    gate = db.get(Approval, approval_id)
    assert gate is not None
    if "decided" in kinds or "expired" in kinds:
        final = Decision(gate.decision) if gate.decision in DECISIONS else None
        actor = (kinds.get("decided") or kinds["expired"]).actor
        return Verdict(accepted=True, person=actor, final=final)
    if "approved" in kinds:
        return Verdict(accepted=True, person=kinds["approved"].actor)
    return Verdict(accepted=False, person=kinds["refused"].actor, reason=kinds["refused"].detail)


def record_verdict(db: Session, approval_id: int, attempt_key: str, result: Verdict) -> None:
    """Write down what :func:`~upkeep.domain.approvals.verdict` decided."""
    person = result.person or ""
    if not result.accepted:
        log_event(
            session=db,
            approval_id=approval_id,
            kind="refused",
            actor=person[:200],
            detail=result.reason,
            attempt_key=attempt_key,
        )
        if result.rotate is not None:
            for old in db.exec(
                select(ApprovalCode).where(
                    ApprovalCode.approval_id == approval_id,
                    ApprovalCode.person == person,
                    col(ApprovalCode.used_at).is_(None),
                )
            ):
                db.delete(old)
            log_event(
                session=db,
                approval_id=approval_id,
                kind="rotated",
                actor=person,
                detail=result.rotate,
            )
        return
    if result.code_used is not None:
        code = db.exec(
            select(ApprovalCode).where(
                ApprovalCode.approval_id == approval_id,
                ApprovalCode.code_hash == result.code_used,
            )
        ).one()
        code.used_at = utcnow()
        db.add(code)
    if result.final is not Decision.REJECT:
        log_event(
            session=db,
            approval_id=approval_id,
            kind="approved",
            actor=person,
            detail=result.note,
            attempt_key=attempt_key,
        )
    if result.final is not None:
        close_gate(
            session=db,
            approval_id=approval_id,
            decision=result.final.value,
            approver=result.decided_by,
            comment=result.decision_comment,
            attempt_key=attempt_key,
        )


def judge(approval_id: int, request: ApprovalRequest, answer: Answer, attempt_key: str) -> Verdict:
    """Judge one answer against the gate's records, record the verdict, and return it; an
    answer judged before (same ``attempt_key``) gets its recorded verdict."""
    with open_session() as db:
        memo = _memo(db, approval_id, attempt_key)
        if memo is not None:
            return memo
        gate = db.get(Approval, approval_id)
        assert gate is not None
        codes = db.exec(select(ApprovalCode).where(ApprovalCode.approval_id == approval_id)).all()
        result = verdict(
            request,
            answer,
            closed=gate.decision,
            events=gate_events(db, approval_id),
            codes=codes,
        )
        record_verdict(db, approval_id, attempt_key, result)
        return result


def refuse_unreadable(approval_id: int, attempt_key: str, why: str) -> Verdict:
    """Refuse an answer that is not a valid form (once: a re-run gets the recorded verdict)."""
    with open_session() as db:
        memo = _memo(db, approval_id, attempt_key)
        if memo is not None:
            return memo
        result = Verdict(accepted=False, person="(unknown)", reason=why)
        record_verdict(db, approval_id, attempt_key, result)
        return result


def record_once(
    approval_id: int,
    attempt_key: str,
    kind: str,
    actor: str,
    detail: str,
    decision: str | None = None,
) -> None:
    """Record an answer's outcome unless a re-run already did (keyed by the answer's key)."""
    with open_session() as db:
        if _memo(db, approval_id, attempt_key) is not None:
            return
        if decision is not None:
            close_gate(
                session=db,
                approval_id=approval_id,
                decision=decision,
                approver=actor,
                comment=detail,
                attempt_key=attempt_key,
            )
        else:
            log_event(
                session=db,
                approval_id=approval_id,
                kind=kind,
                actor=actor[:200],
                detail=detail,
                attempt_key=attempt_key,
            )


def pending_form(approval_id: int) -> list[tuple[str, str | None]]:
    """The gate's (kind, attempt_key) log, for :func:`~upkeep.domain.approvals.pending_attempt`."""
    with open_session() as db:
        return [(e.kind, e.attempt_key) for e in gate_events(db, approval_id)]


def record_waiting(approval_id: int, key: str) -> None:
    """A form opened under ``key`` (recorded before the run waits, so a re-run finds it)."""
    with open_session() as db:
        log_event(session=db, approval_id=approval_id, kind="waiting", attempt_key=key)


def record_planted(flow_run_id: str) -> None:
    """An answer planted under the run's open form was removed: say so on its pending gates."""
    with open_session() as db:
        for gate in open_gates(db, flow_run_id):
            assert gate.id is not None
            log_event(
                session=db,
                approval_id=gate.id,
                kind="planted",
                detail="an answer was stored under the open form's key without resuming the "
                "run; it was removed unread so that the genuine answer can be given",
            )


# --- closing --------------------------------------------------------------------------------


def close_approval(approval_id: int, decision: str, approver: str | None, comment: str) -> None:
    """Close a still-pending gate (used for expiry and for runs that ended while waiting)."""
    with open_session() as db:
        gate = db.get(Approval, approval_id)
        if gate is not None and gate.decision is None:
            close_gate(
                session=db,
                approval_id=approval_id,
                decision=decision,
                approver=approver,
                comment=comment,
            )


def close_gates_of_run(flow_run_id: str, reason: str) -> list[int]:
    """Close every pending gate of ``flow_run_id`` as cancelled with ``reason`` (its run ended
    while the gate waited); the ids closed."""
    closed = []
    with open_session() as db:
        for gate in open_gates(db, flow_run_id):
            assert gate.id is not None
            close_gate(
                session=db, approval_id=gate.id, decision="cancelled", approver=None, comment=reason
            )
            closed.append(gate.id)
    return closed


def close_gates_on_end(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook (on_cancellation, on_crashed, on_failure): a run that ends while a gate of
    it waits closes that gate with the reason. Never raises."""
    try:
        close_gates_of_run(str(flow_run.id), f"the flow run ended ({ended_state(state)})")
    except Exception as exc:  # noqa: BLE001 - a hook must not mask the run's own end
        logging.getLogger("upkeep.approvals").warning(
            "could not close the gates of flow run %s: %s", flow_run.id, exc
        )


def expire_gate(approval_id: int, request: ApprovalRequest, reason: str) -> bool:
    """Close a still-pending gate as expired and tell everyone; False if it was decided."""
    settings = get_settings()
    with open_session() as db:
        gate = db.get(Approval, approval_id)
        if gate is None or gate.decision is not None:
            return False
        close_gate(
            session=db, approval_id=approval_id, decision="expired", approver=None, comment=reason
        )
        subject, text, html = render_gate_notice(
            templates_dir=settings.templates_dir,
            kind="expired",
            contract_code=request.contract,
            subject=request.subject,
            run_url=run_url(settings.prefect_ui_url, gate.flow_run_id) or "",
            detail=reason,
            recipients_role="approvers and the engineer who started the run",
        )
        queue_message(
            session=db,
            contract_id=request.contract_id,
            kind="gate_expired",
            subject=subject,
            recipients=notice_recipients(request, escalated(gate_events(db, approval_id))),
            text_body=text,
            html_body=html,
        )
    with open_session() as db:
        deliver_pending(session=db, smtp=settings.smtp)
    return True


# --- codes ----------------------------------------------------------------------------------


def send_codes(
    approval_id: int, request: ApprovalRequest, people: list[Person], role: str, run_id: str
) -> list[str]:
    """Mail a one-time code to each of ``people`` who may still answer and has none yet.

    Once per person per gate (see :func:`~upkeep.domain.approvals.code_recipients`), however
    often the flow re-runs; nothing is mailed for a closed gate. The code exists only in the
    e-mail: its hash is stored after the mail server accepted it. A failed send stores
    nothing (the next call tries again). Someone whose code was replaced after wrong codes
    under their name is told why in the mail. The same mail carries the person's link to the
    approval page (:mod:`upkeep.tasks.approval_links`; only its hash is stored, a new one
    supersedes the old). Returns who got one.
    """
    settings = get_settings()
    logger = get_run_logger()
    with open_session() as db:
        gate = db.get(Approval, approval_id)
        assert gate is not None
        if gate.decision is not None:
            return []
        coded = {
            c.person
            for c in db.exec(select(ApprovalCode).where(ApprovalCode.approval_id == approval_id))
        }
        log = gate_events(db, approval_id)
        answered = set(approved_by(log))
        rotated = {e.actor: e.detail for e in log if e.kind == "rotated" and e.actor}
        deadline = gate.requested_at + timedelta(hours=request.policy.expire_after_hours)
    wanted = code_recipients(
        people,
        coded=coded,
        answered=answered,
        requested_by=request.requested_by,
        allow_self_approval=request.policy.allow_self_approval,
    )
    sent: list[str] = []
    for person in wanted:
        code = new_code()
        token = new_token()
        evidence = request.evidence
        if person.name in rotated:
            evidence = (
                "**Your earlier code for this gate no longer works:** "
                f"{md_escape(rotated[person.name])}. "
                "Use the code in this e-mail.\n\n" + evidence
            )
        subject, text, html = render_approval_email(
            templates_dir=settings.templates_dir,
            person_name=person.name,
            role=role,
            gate=request.gate,
            contract_code=request.contract,
            subject=request.subject,
            evidence_markdown=evidence,
            run_url=run_url(settings.prefect_ui_url, run_id) or "",
            deadline_text=format_deadline(deadline, request.timezone),
            code=code,
            requested_by=request.requested_by or "(unknown)",
            flow_run_id=run_id,
            decide_url=link_url(settings.approvals.base_url, token),
        )
        email = str(person.email)
        with open_session() as db:
            add_link(db, approval_id, person.name, email, role, token)
        try:
            send_now(smtp=settings.smtp, recipients=[email], subject=subject, text=text, html=html)
        except DeliveryError as exc:
            with open_session() as db:
                drop_link(db, token)
                log_event(
                    session=db,
                    approval_id=approval_id,
                    kind="notify_failed",
                    actor=person.name,
                    detail=f"{email}: {exc}",
                )
            logger.warning("could not mail the approval code to %s: %s", email, exc)
            continue
        with open_session() as db:
            db.add(
                ApprovalCode(
                    approval_id=approval_id,
                    person=person.name,
                    email=email,
                    role=role,
                    code_hash=hash_code(code),
                )
            )
            supersede_links(db, approval_id, person.name, keep=token)
            log_event(
                session=db,
                approval_id=approval_id,
                kind="notified",
                actor=person.name,
                detail=f"{role} {email}",
            )
        sent.append(person.name)
    return sent


# --- the watchdog's records -----------------------------------------------------------------


def request_of(gate: Approval, contract: Contract) -> ApprovalRequest:
    """The request a pending gate was opened with, rebuilt from its records and contract."""
    view = ContractView.of(contract)
    policy = GatePolicy.model_validate(gate.policy or {})
    return ApprovalRequest(
        gate=gate.gate,
        key=gate.gate_key or gate.gate,
        contract=view.code,
        contract_id=view.id,
        subject=gate.subject,
        evidence=gate.evidence,
        approvers=list(policy.approvers or view.approvers),
        backup_approver=view.backup_approver,
        requested_by=gate.requested_by,
        policy=policy,
        timezone=view.timezone,
    )


@dataclass(frozen=True)
class PendingGate:
    id: int
    request: ApprovalRequest
    requested_at: datetime
    flow_run_id: str


def _has_event(db: Session, approval_id: int, kind: str) -> bool:
    return (
        db.exec(
            select(ApprovalEvent).where(
                ApprovalEvent.approval_id == approval_id, ApprovalEvent.kind == kind
            )
        ).first()
        is not None
    )


def pending_gates() -> list[PendingGate]:
    """Every approver gate still waiting for a decision."""
    with open_session() as db:
        rows = db.exec(
            select(Approval, Contract)
            .join(Contract, col(Contract.id) == col(Approval.contract_id))
            .where(col(Approval.decision).is_(None), col(Approval.gate_key).is_not(None))
        )
        out = []
        for gate, contract in rows:
            assert gate.id is not None
            out.append(
                PendingGate(
                    gate.id, request_of(gate, contract), gate.requested_at, gate.flow_run_id
                )
            )
        return out


def expired_unended() -> list[tuple[int, str, str]]:
    """(gate id, flow run id, reason) of expired gates whose run was not ended yet."""
    with open_session() as db:
        return [
            (g.id, g.flow_run_id, g.comment or "approval gate expired")
            for g in db.exec(select(Approval).where(Approval.decision == "expired"))
            if g.id is not None and not _has_event(db, g.id, "run_ended")
        ]


def escalate_if_due(pending: PendingGate, now: datetime) -> tuple[bool, bool]:
    """(escalated now, escalated at all): records the escalation once when it is due."""
    request = pending.request
    with open_session() as db:
        already = _has_event(db, pending.id, "escalated")
        now_due = escalation_due(request, pending.requested_at, now, already=already)
        if now_due:
            assert request.backup_approver is not None
            log_event(
                session=db,
                approval_id=pending.id,
                kind="escalated",
                actor=request.backup_approver.name,
                detail=escalation_reason(request.policy),
            )
    return now_due, now_due or already


def record_run_ended(approval_id: int, reason: str) -> None:
    with open_session() as db:
        log_event(session=db, approval_id=approval_id, kind="run_ended", detail=reason)
