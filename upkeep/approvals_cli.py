"""Acting on waiting gates from the command line, through the same resume API the UI uses."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.exceptions import FlowPauseTimeout, NotPausedError, PrefectHTTPStatusError
from prefect.flow_runs import resume_flow_run
from sqlmodel import Session, col, select

from upkeep.db import engine_for, session_scope
from upkeep.domain.approvals import ended_state, match_person
from upkeep.domain.contract import ContractView
from upkeep.models import Approval, ApprovalEvent, Contract, utcnow
from upkeep.settings import Settings
from upkeep.tasks.approval_records import close_gates_of_run
from upkeep.tasks.pause import clear_planted_answer, run_end_reason

REVISION_SUFFIX = "-revision"


class ApprovalCliError(RuntimeError):
    pass


def list_approvals(session: Session, *, pending_only: bool = False) -> list[Approval]:
    query = select(Approval).order_by(col(Approval.requested_at).desc(), col(Approval.id).desc())
    if pending_only:
        query = query.where(col(Approval.decision).is_(None))
    return list(session.exec(query))


def find_pending(session: Session, run: str, gate_kind: str) -> Approval:
    """The one pending gate whose flow run id starts with ``run``."""
    run = run.strip().lower()
    if len(run) < 4:
        raise ApprovalCliError("give at least the first 4 characters of the flow run id")
    pending = [
        a
        for a in list_approvals(session, pending_only=True)
        if a.flow_run_id.lower().startswith(run)
        and a.gate.endswith(REVISION_SUFFIX) == (gate_kind == "revision")
    ]
    if not pending:
        others = [a for a in list_approvals(session) if a.flow_run_id.lower().startswith(run)]
        if others:
            last = others[0]
            raise ApprovalCliError(
                f"flow run {last.flow_run_id} has no pending {gate_kind}: its latest "
                f"gate {last.gate!r} is {last.decision or 'pending'}"
            )
        raise ApprovalCliError(
            f"no pending {gate_kind} for flow run {run!r} (see `upkeep approvals list --pending`)"
        )
    if len({a.flow_run_id for a in pending}) > 1:
        raise ApprovalCliError(f"{run!r} matches several flow runs: give more of the id")
    return pending[0]


def not_waiting(flow_run_id: str) -> str:
    """Why a run with a pending gate on record cannot take an answer; a run that ended gets
    its pending gates closed with the reason (nothing can answer them any more)."""
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    name = state.name if state is not None else "no state"
    if state is not None and state.is_final():
        reason = f"its flow run ended ({ended_state(state)})"
        close_gates_of_run(flow_run_id, f"closed without a decision: {reason}")
        return (
            f"flow run {flow_run_id} is not waiting for an answer: {reason}. Its gate is "
            "closed now; nothing was recorded for your answer"
        )
    return (
        f"flow run {flow_run_id} is not waiting for an answer right now (it is {name}: "
        "it may be judging another answer); nothing was recorded, try again in a moment"
    )


def canonical_name(db: Session, gate: Approval, typed: str) -> str:
    """``typed`` (a name or e-mail, any case) as the gate's contract spells that person's
    name; unchanged when it names nobody on the contract."""
    contract = db.get(Contract, gate.contract_id) if gate.contract_id is not None else None
    if contract is None:
        return typed
    person = match_person(typed, ContractView.of(contract).people)
    return person.name if person is not None else typed


@dataclass(frozen=True)
class Outcome:
    """What became of an answer sent to a waiting gate."""

    status: Literal["decided", "approved", "refused", "sent"]
    """decided: the gate is closed with a decision; approved: an approval was recorded and
    the gate waits for more; refused: the flow refused the answer (``detail`` says why);
    sent: the flow has not recorded anything yet."""
    message: str
    detail: str = ""
    decision: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status in ("decided", "approved")


def resume_and_wait(
    settings: Settings, run: str, gate_kind: str, run_input: dict[str, Any], wait: float = 60.0
) -> tuple[str, bool]:
    """Resume the gate with ``run_input`` and wait until the flow has judged the answer.

    Returns (what happened, whether the answer was accepted).
    """
    engine = engine_for(settings.db_url)
    with session_scope(engine) as db:
        gate = find_pending(db, run, gate_kind)
        gate_id, flow_run_id = gate.id, gate.flow_run_id
        if isinstance(run_input.get("approver"), str):
            # The form offers the contract's names: one typed as an e-mail or in another case
            # is sent as the contract spells it. Anyone else is refused by the form itself.
            run_input = {**run_input, "approver": canonical_name(db, gate, run_input["approver"])}
    assert gate_id is not None
    outcome = send_answer(settings, gate_id, flow_run_id, run_input, wait)
    return outcome.message, outcome.accepted


def resume(flow_run_id: str, run_input: dict[str, Any], patience: float = 0.0) -> None:
    """The Prefect UI's resume call with ``run_input``; an answer planted under the open form
    (which would make it fail with 409) is removed first. ApprovalCliError says why not.

    With ``patience`` (seconds), a run that is between two forms (a suspended run restarting
    after the previous answer, or one still judging it) is given that long to wait again.
    """
    patient_until = time.monotonic() + patience
    for attempt in range(20):
        try:
            clear_planted_answer(flow_run_id)
            resume_flow_run(UUID(flow_run_id), run_input=run_input)
            return
        except NotPausedError:
            if time.monotonic() < patient_until and run_end_reason(flow_run_id) is None:
                wait_until_paused(flow_run_id, patient_until)
                continue
            raise ApprovalCliError(not_waiting(flow_run_id)) from None
        except FlowPauseTimeout:
            raise ApprovalCliError(f"flow run {flow_run_id} can no longer be resumed") from None
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code == 409 and attempt < 19:
                time.sleep(0.2)  # planted again meanwhile: remove it and try again
                continue
            raise ApprovalCliError(f"the Prefect API refused the answer: {exc}") from None
        except RuntimeError as exc:
            # A gate is on record a moment before its form is: wait for the form.
            if "schema not found" in str(exc) and attempt < 19:
                time.sleep(0.5)
                continue
            if "field 'approver'" in str(exc):
                raise ApprovalCliError(
                    f"the form refused the answer: {run_input.get('approver')!r} is not one of "
                    "the people who may answer this gate; nothing was recorded"
                ) from None
            raise ApprovalCliError(f"the Prefect API refused the answer: {exc}") from None
    raise ApprovalCliError(f"flow run {flow_run_id} did not take the answer; nothing was recorded")


def wait_until_paused(flow_run_id: str, until: float) -> None:
    """Poll the run's state until it waits at a form again (or ``until``, or it ended)."""
    with get_client(sync_client=True) as client:
        while time.monotonic() < until:
            state = client.read_flow_run(UUID(flow_run_id)).state
            if state is not None and (state.is_paused() or state.is_final()):
                return
            time.sleep(0.5)


def send_answer(
    settings: Settings,
    gate_id: int,
    flow_run_id: str,
    run_input: dict[str, Any],
    wait: float = 60.0,
    *,
    person: str | None = None,
) -> Outcome:
    """Resume gate ``gate_id``'s run with ``run_input`` and wait (at most ``wait`` seconds)
    until the flow has judged it. With ``person``, only that person's verdicts count (the
    approval page, which knows who answered)."""
    engine = engine_for(settings.db_url)
    sent_at = utcnow()
    resume(flow_run_id, run_input, patience=wait if person is not None else 0.0)
    deadline = time.monotonic() + wait + settings.approval_poll_seconds * 2
    while time.monotonic() < deadline:
        with session_scope(engine) as db:
            row = db.get(Approval, gate_id)
            assert row is not None
            query = select(ApprovalEvent).where(
                ApprovalEvent.approval_id == gate_id,
                col(ApprovalEvent.kind).in_(["refused", "approved"]),
                col(ApprovalEvent.at) >= sent_at,
            )
            if person is not None:
                query = query.where(ApprovalEvent.actor == person)
            news = db.exec(query.order_by(col(ApprovalEvent.id))).first()
            if row.decision is not None and (
                person is None or news is None or news.kind != "refused"
            ):
                return Outcome(
                    "decided",
                    f"{row.gate}: {row.decision} by {row.approver} recorded "
                    f"(flow run {flow_run_id})",
                    detail=row.comment or "",
                    decision=row.decision,
                )
            if news is not None and news.kind == "refused":
                return Outcome(
                    "refused",
                    f"refused: {news.detail}; the gate is waiting again",
                    detail=news.detail,
                )
            if news is not None:
                return Outcome(
                    "approved",
                    f"approval by {news.actor} recorded; the gate waits for more approvals",
                )
        time.sleep(0.5)
    return Outcome(
        "sent",
        f"the answer was sent to flow run {flow_run_id}, but the flow has not recorded it "
        "yet (a suspended run restarts first): check `upkeep approvals show "
        f"{gate_id}`",
    )
