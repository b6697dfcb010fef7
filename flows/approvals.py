"""The approval gate every process uses: ask, prove who answered, record, ask again if needed.

:func:`request_approval` runs inside the flow that needs the decision. When the gate opens,
each named approver gets an e-mail with the evidence, a link to the run and a one-time code
(only its hash is stored). The flow then waits for a typed :class:`ApprovalInput`:

* in a run started from a deployment it *suspends*: no process waits, nothing is lost if a
  worker or the API goes away; on resume the flow re-runs from the top, the steps before the
  gate come back from their persisted results, and the gate replays from its own records: a
  decided gate returns its decision at once, answers already judged are never judged again,
  and only the answer to the newest open form is read (so no e-mail, code or decision happens
  twice, however many times the run was suspended);
* in a run started interactively (no deployment to re-run it) it *pauses*.

Each form is opened under a fresh random pause key recorded as a ``waiting`` event before the
run waits, so nobody can create the form's input keys in advance; an answer stored under the
open form's key without resuming the run (which would make every genuine answer fail with 409)
is removed by :func:`clear_planted_answer` (the watchdog and ``upkeep approve`` call it).

An answer counts only if it names an approver of this gate, carries that person's unused code,
the person did not start the run (unless the contract allows it), and a rejection says why.
Anything else is recorded as a refused attempt and the gate waits again. Nobody is locked out:
after ``max_failed_attempts`` wrong codes under one name that person's code is replaced and a
new one is mailed to them. Codes go once per person per gate, only to people who may still
answer. The contract's policy sets how many approvals are needed (M of N), when the gate
escalates to the backup approver and when it expires (the watchdog flow acts on both, and
closes the gates of runs that ended without a decision).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any, Literal, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prefect import get_run_logger
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from sqlmodel import Session, col, select

from upkeep.db import engine_for, session_scope
from upkeep.domain.contract import GatePolicy
from upkeep.domain.markup import md_escape
from upkeep.models import Approval, ApprovalCode, ApprovalEvent, utcnow
from upkeep.settings import get_settings
from upkeep.tasks.gates import (
    DECISIONS,
    VERDICTS,
    WRONG_CODE,
    close_gate,
    log_event,
    open_gate,
    pending_attempt,
    wrong_codes_since_rotation,
)

R = TypeVar("R", bound=RunInput)


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class ApprovalInput(RunInput):
    """The resume form. No field has a default: an empty resume is never an approval."""

    decision: Decision = Field(description="approve, or reject to send it back")
    approver: str = Field(
        min_length=1, max_length=200, description="Your name (or e-mail) as the contract lists it"
    )
    code: str = Field(
        min_length=1, max_length=40, description="The one-time code from your approval e-mail"
    )
    comment: str = Field(
        default="", max_length=4000, description="Required when you reject: what must change"
    )


class Person(BaseModel):
    name: str
    email: str


def answerable_names(request: ApprovalRequest, approved_by: Sequence[str] = ()) -> list[str]:
    """The names the form offers: everyone who may ever decide this gate (its approvers, and
    the backup approver when the gate escalates), less those who already approved and the
    starter when self-approval is off. The form is saved once per suspend, so the backup
    approver is offered before escalation too; an answer of theirs that comes too early is
    judged and refused with the reason."""
    escalates = request.policy.escalate_after_hours is not None
    return [p.name for p in still_deciding(request, approved_by, with_backup=escalates)]


def approval_form(names: Sequence[str]) -> type[ApprovalInput]:
    """The resume form with ``approver`` as a choice of ``names``: the UI shows a list, and
    the server refuses any other name before the flow sees it. With no names known, the
    free-text form (every answer is then judged by the flow)."""
    if not names:
        return ApprovalInput
    choice: Any = Literal[tuple(names)]
    form: type[ApprovalInput] = create_model(
        "ApprovalInput",
        __base__=ApprovalInput,
        approver=(
            choice,
            Field(description="Your name as the contract lists it (the code is yours alone)"),
        ),
    )
    return form


class ApprovalRequest(BaseModel):
    """What a gate asks, of whom, under which policy."""

    model_config = ConfigDict(extra="forbid")

    gate: str = Field(description="Which gate: inspection-plan, release, ...")
    key: str = Field(
        pattern=r"^[a-z0-9-]+$",
        description="Unique within the run (gate and round); Prefect's input keys allow only "
        "letters, digits and dashes",
    )
    contract: str
    contract_id: int | None = None
    subject: str
    evidence: str = Field(description="Markdown shown to the approver")
    approvers: list[Person] = Field(min_length=1)
    backup_approver: Person | None = None
    requested_by: str | None = None
    policy: GatePolicy = GatePolicy()
    timezone: str = Field("UTC", description="The contract's timezone: deadlines are shown in it")


class ApprovalResult(BaseModel):
    approval_id: int
    decision: Decision
    approver: str
    comment: str
    decided_at: datetime


class GateClosed(RuntimeError):
    """The gate ended without an approver's decision: expired, or its run was cancelled.

    ``cancelled``: the run itself is being cancelled (the flow should end *Cancelled*)."""

    def __init__(self, message: str, *, cancelled: bool = False) -> None:
        super().__init__(message)
        self.cancelled = cancelled


class ApprovalExpired(GateClosed):
    pass


class Verdict(BaseModel):
    """How one answer was judged. ``final`` is set once the gate is decided."""

    accepted: bool
    person: str | None = None
    reason: str = ""
    final: Decision | None = None


def match_person(claimed: str, people: list[Person]) -> Person | None:
    """The person ``claimed`` names (by name or e-mail, any case), or None."""
    wanted = claimed.strip().casefold()
    for p in people:
        if wanted in (p.name.strip().casefold(), p.email.strip().casefold()):
            return p
    return None


def is_starter(person: Person, requested_by: str | None) -> bool:
    if not requested_by:
        return False
    starter = requested_by.strip().casefold()
    return starter in (person.name.strip().casefold(), person.email.strip().casefold())


def may_still_answer(
    person: Person,
    *,
    answered: Collection[str],
    requested_by: str | None,
    allow_self_approval: bool,
) -> bool:
    """Whether ``person`` may still answer a gate: not if they already approved it, nor if
    they started the run and the contract does not let a starter approve. Pure."""
    return person.name not in answered and (
        allow_self_approval or not is_starter(person, requested_by)
    )


def still_deciding(
    request: ApprovalRequest, approved_by: Sequence[str], *, with_backup: bool
) -> list[Person]:
    """The gate's approvers (and its backup approver when ``with_backup``) who may still
    answer, each once. Pure."""
    people = list(request.approvers)
    if with_backup and request.backup_approver is not None:
        people.append(request.backup_approver)
    still: list[Person] = []
    for person in people:
        if person.name not in {p.name for p in still} and may_still_answer(
            person,
            answered=approved_by,
            requested_by=request.requested_by,
            allow_self_approval=request.policy.allow_self_approval,
        ):
            still.append(person)
    return still


def code_recipients(
    people: list[Person],
    *,
    coded: set[str],
    answered: set[str],
    requested_by: str | None,
    allow_self_approval: bool,
) -> list[Person]:
    """Who of ``people`` is mailed a code now. Pure.

    Only someone who may still answer and holds no code of this gate yet: not whoever already
    has one (live or used; a replaced code is deleted, so its owner gets a new one), nor who
    already approved, nor the run's starter when the contract does not let them approve.
    """
    return [
        p
        for p in people
        if p.name not in coded
        and may_still_answer(
            p,
            answered=answered,
            requested_by=requested_by,
            allow_self_approval=allow_self_approval,
        )
    ]


def run_url(ui_url: str, flow_run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}"


REFUSALS_SHOWN = 5
"""How many refused answers a form lists (the newest); the rest are counted."""


def describe_refusals(
    refusals: Sequence[str], *, heading: str = "Earlier answers were refused"
) -> str:
    """The refused answers and why, newest last, as a Markdown block ("" when none).

    The reasons hold what people typed (a claimed name, a comment): each is escaped.
    """
    if not refusals:
        return ""
    shown = refusals[-REFUSALS_SHOWN:]
    lines = [f"**{md_escape(heading)}** ({len(refusals)}, newest last):"]
    if len(refusals) > len(shown):
        lines.append(f"- … {len(refusals) - len(shown)} earlier refusal(s) not shown")
    lines += [f"- {md_escape(r, limit=300)}" for r in shown]
    return "\n".join(lines)


def format_deadline(at: datetime, timezone: str) -> str:
    """``at`` in the contract's timezone, named: ``2026-12-04 09:00 CET (Europe/Berlin)``.

    A naive ``at`` is UTC (SQLite drops the offset); an unknown zone falls back to UTC.
    """
    try:
        zone: tzinfo = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone, timezone = UTC, "UTC"
    local = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M %Z} ({timezone})"


def describe(
    request: ApprovalRequest,
    refusals: Sequence[str],
    *,
    approved_by: Sequence[str] = (),
    escalated: bool = False,
    opened_at: datetime | None = None,
) -> str:
    """The approval form's Markdown: what the approver needs first, then the evidence.

    In this order: refused earlier answers and why; how many approvals are given and needed;
    who may still decide (the backup approver once the gate escalated); the deadline (and
    when it escalates) in the contract's timezone; how to answer; the evidence. Every name,
    subject and reason is escaped; the evidence is Markdown its requester built (escaped
    there). ``approved_by``, ``escalated`` and ``opened_at`` are the gate's state from its
    records.
    """
    policy = request.policy
    need = policy.required_approvals
    approved = list(dict.fromkeys(approved_by))
    # No heading: the UI shows the description in a short scrolling box above the fields,
    # where a large heading would be all the approver sees.
    lines = [f"**Approval needed:** {md_escape(request.subject)}", ""]
    refused = describe_refusals(refusals)
    if refused:
        lines += [refused, ""]
    if need > 1 or approved:
        given = f"**{len(approved)} of {need} approved**"
        if approved:
            given += " (" + ", ".join(md_escape(n) for n in approved) + ")"
        more = need - len(approved)
        lines.append("- " + given + (f"; {more} more needed." if more > 0 else "."))
    still = still_deciding(request, approved, with_backup=escalated)
    if still:
        names = ", ".join(
            md_escape(p.name) + (" (backup approver)" if p is request.backup_approver else "")
            for p in still
        )
        lines.append(f"- **Who may still decide:** {names}.")
    else:
        lines.append("- **Nobody who may decide is left to answer this gate.**")
    if escalated and request.backup_approver is not None:
        lines.append(
            "- Nobody decided in time, so the gate was escalated to the backup approver "
            f"{md_escape(request.backup_approver.name)}."
        )
    if opened_at is not None:
        tz = request.timezone
        deadline = opened_at + timedelta(hours=policy.expire_after_hours)
        lines.append(f"- **Decide before:** {format_deadline(deadline, tz)}.")
        if (
            not escalated
            and request.backup_approver is not None
            and policy.escalate_after_hours is not None
        ):
            at = opened_at + timedelta(hours=policy.escalate_after_hours)
            lines.append(
                f"- Undecided at {format_deadline(at, tz)}, it goes to the backup approver "
                f"{md_escape(request.backup_approver.name)} too."
            )
    lines += [
        "",
        "Choose *approve* or *reject*, give your name as listed and the one-time code "
        "from your e-mail, and say why when you reject.",
        "",
        "---",
        "",
        request.evidence.rstrip(),
    ]
    return "\n".join(lines)


def _flow_run() -> tuple[str, bool]:
    """(this flow run's id, whether it came from a deployment and can be suspended)."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        raise RuntimeError("an approval gate runs inside a flow run")
    return str(ctx.flow_run.id), ctx.flow_run.deployment_id is not None


def wait_for(form: type[R], key: str, timeout_s: int) -> R:
    """Suspend (deployment runs) or pause (interactive runs) until the form is answered."""
    _, durable = _flow_run()
    if durable:
        return suspend_flow_run(wait_for_input=form, key=key, timeout=None)
    return pause_and_poll(form, key, timeout_s)


def pause_and_poll(form: type[R], key: str, timeout_s: int) -> R:
    """Prefect's ``pause_flow_run(wait_for_input=...)``, except that a run cancelled (from
    the UI) or ended while it waits leaves at once: its pending gates are closed with the
    reason and :class:`GateClosed` is raised (Prefect's own loop would wait for the timeout).
    """
    import time

    from prefect.client.orchestration import get_client
    from prefect.exceptions import Abort
    from prefect.input.run_input import keyset_from_paused_state, run_input_subclass_from_type
    from prefect.states import Paused
    from prefect.utilities.engine import propose_state_sync

    run_id, _ = _flow_run()
    poll = get_settings().approval_poll_seconds
    proposed: Any = Paused(timeout_seconds=timeout_s, reschedule=False, pause_key=key)
    answer_form: Any = run_input_subclass_from_type(form)
    keyset = keyset_from_paused_state(proposed)
    proposed.state_details.run_input_keyset = keyset
    with get_client(sync_client=True) as client:
        try:
            state = propose_state_sync(client=client, state=proposed, flow_run_id=UUID(run_id))
        except Abort as exc:
            raise RuntimeError(f"Flow run cannot be paused: {exc}") from None
        if state.is_running():  # this pause fired before and was answered
            return answer_form.load(keyset)  # type: ignore[no-any-return]
        if not state.is_paused():
            raise RuntimeError(f"Flow run cannot be paused: the API answered {state}")
        answer_form.save(keyset)
        get_run_logger().info("paused; waiting for an answer under the form's key")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
            now = client.read_flow_run(UUID(run_id)).state
            if now is not None and now.is_running():
                return answer_form.load(keyset)  # type: ignore[no-any-return]
            if now is not None and (now.is_final() or now.is_cancelling()):
                _raise_if_run_ended(run_id)
    raise FlowPauseTimeout("Flow run was paused and never resumed.")


def response_key(pause_key: str, suspended: bool = True) -> str:
    """The input key Prefect's resume stores the answer under for a form opened with
    ``pause_key`` (state name, pause key, ``-response``; see prefect.input.run_input)."""
    from prefect.input.run_input import keyset_from_base_key

    base = f"{'suspended' if suspended else 'paused'}-{pause_key}"
    return keyset_from_base_key(base)["response"]


def _fired_pause_keys(run_id: str) -> set[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
    return set(run.empirical_policy.pause_keys or set())


def _parse_answer(form: type[R], raw: Any) -> R | str:
    """The stored answer as ``form``, or why it is not a valid one."""
    if not isinstance(raw, dict):
        return "the answer was not a form"
    try:
        return form.model_validate(raw)
    except ValidationError as exc:
        return f"the answer was not valid ({exc.error_count()} error(s))"


def wait_for_answer(
    form: type[R], approval_id: int, gate_key: str, timeout_s: int
) -> tuple[str, R | str]:
    """(pause key, the answer or why it is not one) for the gate's open form.

    If the newest form already has its answer (a suspended run re-running after resume), that
    answer is read and returned; otherwise a form is opened under a fresh random key (recorded
    first, so a re-run finds it) and the run suspends or pauses. An answer is only ever read
    from the newest open form: earlier forms were judged and their verdicts are on record.
    """
    from prefect.input.actions import read_flow_run_input

    run_id, durable = _flow_run()
    with _db() as db:
        key = pending_attempt([(e.kind, e.attempt_key) for e in _events(db, approval_id)])
    if key is not None and durable:
        raw = read_flow_run_input(response_key(key), flow_run_id=UUID(run_id))
        if raw is not None:
            return key, _parse_answer(form, raw)
        if key in _fired_pause_keys(run_id):
            key = None  # the run left that form without an answer: open a new one
    if key is None:
        key = f"{gate_key}-{secrets.token_hex(8)}"
        with _db() as db:
            log_event(session=db, approval_id=approval_id, kind="waiting", attempt_key=key)
    try:
        return key, wait_for(form, key, timeout_s)
    except ValidationError as exc:
        return key, f"the answer was not valid ({exc.error_count()} error(s))"


def _raise_if_run_ended(run_id: str) -> None:
    """GateClosed (the run's pending gates closed with the reason) if the run was cancelled
    or ended while its gate waited."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run_id)).state
    if state is None or not (state.is_final() or state.is_cancelling()):
        return
    reason = f"the flow run ended ({ended_state(state)})"
    close_gates_of_run(run_id, f"closed without a decision: {reason}")
    raise GateClosed(reason, cancelled=state.is_cancelling() or state.is_cancelled())


def clear_planted_answer(flow_run_id: str) -> bool:
    """Remove an answer stored under a waiting run's open form without resuming the run.

    Prefect's resume stores the answer and leaves the paused state in one transaction, so an
    answer under the open form's key while the run is still paused was put there by someone
    else (``POST /flow_runs/{id}/input``), and while it is there every genuine answer fails
    with 409. It is deleted (never judged) and recorded on the run's pending gate. True if
    one was removed.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    run_uuid = UUID(flow_run_id)
    with get_client(sync_client=True) as client:
        try:
            state = client.read_flow_run(run_uuid).state
        except ObjectNotFound:
            return False
        keyset = state.state_details.run_input_keyset if state is not None else None
        if state is None or not state.is_paused() or not keyset:
            return False
        try:
            client.read_flow_run_input(run_uuid, keyset["response"])
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code == 404:
                return False
            raise
        # Read after the answer: had a resume stored it, the run would have left this state.
        now = client.read_flow_run(run_uuid).state
        if now is None or now.id != state.id:
            return False
        try:
            client.delete_flow_run_input(run_uuid, keyset["response"])
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 404:
                raise
    with _db() as db:
        for gate in _open_gates(db, flow_run_id):
            assert gate.id is not None
            log_event(
                session=db,
                approval_id=gate.id,
                kind="planted",
                detail="an answer was stored under the open form's key without resuming the "
                "run; it was removed unread so that the genuine answer can be given",
            )
    return True


# --- records --------------------------------------------------------------------------------


def _db() -> Any:
    return session_scope(engine_for(get_settings().db_url))


def _open_gates(db: Session, flow_run_id: str) -> list[Approval]:
    """The gates of ``flow_run_id`` that no decision has closed yet."""
    return list(
        db.exec(
            select(Approval).where(
                Approval.flow_run_id == flow_run_id, col(Approval.decision).is_(None)
            )
        )
    )


def _events(db: Session, approval_id: int) -> list[ApprovalEvent]:
    return list(
        db.exec(
            select(ApprovalEvent)
            .where(ApprovalEvent.approval_id == approval_id)
            .order_by(col(ApprovalEvent.id))
        )
    )


def refusal_reasons(approval_id: int) -> list[str]:
    """Why earlier answers to this gate were refused, oldest first (shown on the next form)."""
    with _db() as db:
        return [e.detail for e in _events(db, approval_id) if e.kind == "refused"]


def deciders(request: ApprovalRequest, escalated: bool) -> list[tuple[Person, str]]:
    """Who may decide the gate now, with their role: the approvers, and after escalation the
    backup approver."""
    people = [(p, "approver") for p in request.approvers]
    if escalated and request.backup_approver is not None:
        people.append((request.backup_approver, "backup approver"))
    return people


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
    with _db() as db:
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


def send_codes(
    approval_id: int, request: ApprovalRequest, people: list[Person], role: str, run_id: str
) -> list[str]:
    """Mail a one-time code to each of ``people`` who may still answer and has none yet.

    Once per person per gate (see :func:`code_recipients`), however often the flow re-runs;
    nothing is mailed for a closed gate. The code exists only in the e-mail: its hash is
    stored after the mail server accepted it. A failed send stores nothing (the next call
    tries again). Someone whose code was replaced after wrong codes under their name is told
    why in the mail. Returns who got one.
    """
    from upkeep.tasks.codes import hash_code, new_code
    from upkeep.tasks.notify import DeliveryError, render_approval_email, send_now

    settings = get_settings()
    logger = get_run_logger()
    with _db() as db:
        gate = db.get(Approval, approval_id)
        assert gate is not None
        if gate.decision is not None:
            return []
        coded = {
            c.person
            for c in db.exec(select(ApprovalCode).where(ApprovalCode.approval_id == approval_id))
        }
        log = _events(db, approval_id)
        answered = {e.actor for e in log if e.kind == "approved" and e.actor}
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
            run_url=run_url(settings.prefect_ui_url, run_id),
            deadline_text=format_deadline(deadline, request.timezone),
            code=code,
            requested_by=request.requested_by or "(unknown)",
            flow_run_id=run_id,
        )
        try:
            send_now(
                smtp=settings.smtp, recipients=[person.email], subject=subject, text=text, html=html
            )
        except DeliveryError as exc:
            with _db() as db:
                log_event(
                    session=db,
                    approval_id=approval_id,
                    kind="notify_failed",
                    actor=person.name,
                    detail=f"{person.email}: {exc}",
                )
            logger.warning("could not mail the approval code to %s: %s", person.email, exc)
            continue
        with _db() as db:
            db.add(
                ApprovalCode(
                    approval_id=approval_id,
                    person=person.name,
                    email=person.email,
                    role=role,
                    code_hash=hash_code(code),
                )
            )
            log_event(
                session=db,
                approval_id=approval_id,
                kind="notified",
                actor=person.name,
                detail=f"{role} {person.email}",
            )
        sent.append(person.name)
    return sent


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


def _refuse(db: Session, approval_id: int, attempt_key: str, actor: str, reason: str) -> Verdict:
    log_event(
        session=db,
        approval_id=approval_id,
        kind="refused",
        actor=actor[:200],
        detail=reason,
        attempt_key=attempt_key,
    )
    return Verdict(accepted=False, person=actor, reason=reason)


def judge(
    approval_id: int, request: ApprovalRequest, answer: ApprovalInput, attempt_key: str
) -> Verdict:
    """Judge one answer against the gate's records, record the verdict, and return it."""
    from upkeep.tasks.codes import looks_like_code, verify_code

    with _db() as db:
        memo = _memo(db, approval_id, attempt_key)
        if memo is not None:
            return memo
        gate = db.get(Approval, approval_id)
        assert gate is not None
        if gate.decision is not None:
            return _refuse(
                db,
                approval_id,
                attempt_key,
                answer.approver,
                f"the gate is already closed ({gate.decision})",
            )
        escalated = db.exec(
            select(ApprovalEvent).where(
                ApprovalEvent.approval_id == approval_id, ApprovalEvent.kind == "escalated"
            )
        ).first()
        people = list(request.approvers)
        if escalated is not None and request.backup_approver is not None:
            people.append(request.backup_approver)
        person = match_person(answer.approver, people)
        if person is None:
            allowed = ", ".join(p.name for p in people)
            return _refuse(
                db,
                approval_id,
                attempt_key,
                answer.approver,
                f"{answer.approver!r} may not decide this gate (allowed: {allowed})",
            )
        if not request.policy.allow_self_approval and is_starter(person, request.requested_by):
            return _refuse(
                db,
                approval_id,
                attempt_key,
                person.name,
                f"{person.name} started this run and may not approve it",
            )
        if answer.decision is Decision.REJECT and not answer.comment.strip():
            return _refuse(
                db,
                approval_id,
                attempt_key,
                person.name,
                "a rejection needs a comment saying what must change",
            )
        codes = db.exec(
            select(ApprovalCode).where(
                ApprovalCode.approval_id == approval_id, ApprovalCode.person == person.name
            )
        ).all()
        match = None
        if looks_like_code(answer.code):
            match = next((c for c in codes if verify_code(answer.code, c.code_hash)), None)
        if match is None:
            return _wrong_code(db, approval_id, attempt_key, person, request.policy)
        if match.used_at is not None:
            return _refuse(db, approval_id, attempt_key, person.name, "that code was already used")
        match.used_at = utcnow()
        db.add(match)
        if answer.decision is Decision.REJECT:
            return _decide(
                db, approval_id, attempt_key, Decision.REJECT, [person.name], answer.comment.strip()
            )
        log_event(
            session=db,
            approval_id=approval_id,
            kind="approved",
            actor=person.name,
            detail=answer.comment.strip(),
            attempt_key=attempt_key,
        )
        approvals = db.exec(
            select(ApprovalEvent).where(
                ApprovalEvent.approval_id == approval_id, ApprovalEvent.kind == "approved"
            )
        ).all()
        names = list(dict.fromkeys(e.actor for e in approvals if e.actor))
        if len(names) < request.policy.required_approvals:
            return Verdict(accepted=True, person=person.name)
        comments = "; ".join(e.detail for e in approvals if e.detail)
        return _decide(db, approval_id, attempt_key, Decision.APPROVE, names, comments)


def _wrong_code(
    db: Session, approval_id: int, attempt_key: str, person: Person, policy: GatePolicy
) -> Verdict:
    """Refuse a wrong code; after ``max_failed_attempts`` of them under ``person``'s name,
    replace that person's code (deleted here, a new one is mailed by :func:`send_codes`)."""
    log = [(e.kind, e.actor, e.detail) for e in _events(db, approval_id)]
    wrong = wrong_codes_since_rotation(log, person.name) + 1
    rotate = wrong >= policy.max_failed_attempts
    reason = WRONG_CODE
    if rotate:
        reason += (
            f"; after {wrong} wrong codes under this name {person.name}'s code was replaced "
            "and a new one is mailed to them"
        )
    verdict = _refuse(db, approval_id, attempt_key, person.name, reason)
    if rotate:
        for old in db.exec(
            select(ApprovalCode).where(
                ApprovalCode.approval_id == approval_id,
                ApprovalCode.person == person.name,
                col(ApprovalCode.used_at).is_(None),
            )
        ):
            db.delete(old)
        log_event(
            session=db,
            approval_id=approval_id,
            kind="rotated",
            actor=person.name,
            detail=f"{wrong} wrong codes were typed under {person.name}'s name",
        )
    return verdict


def _decide(
    db: Session,
    approval_id: int,
    attempt_key: str,
    decision: Decision,
    names: list[str],
    comment: str,
) -> Verdict:
    close_gate(
        session=db,
        approval_id=approval_id,
        decision=decision.value,
        approver=", ".join(names),
        comment=comment,
        attempt_key=attempt_key,
    )
    return Verdict(accepted=True, person=names[-1], final=decision)


def record_once(
    approval_id: int,
    attempt_key: str,
    kind: str,
    actor: str,
    detail: str,
    decision: str | None = None,
) -> None:
    """Record an answer's outcome unless a re-run already did (keyed by the answer's key)."""
    with _db() as db:
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


def close_approval(approval_id: int, decision: str, approver: str | None, comment: str) -> None:
    """Close a still-pending gate (used for expiry and for runs that ended while waiting)."""
    with _db() as db:
        gate = db.get(Approval, approval_id)
        if gate is not None and gate.decision is None:
            close_gate(
                session=db,
                approval_id=approval_id,
                decision=decision,
                approver=approver,
                comment=comment,
            )


def notice_recipients(request: ApprovalRequest, escalated: bool) -> list[str]:
    """Who hears that a gate ended without a decision: approvers, backup, the starter."""
    people = list(request.approvers)
    if escalated and request.backup_approver is not None:
        people.append(request.backup_approver)
    recipients = [p.email for p in people]
    starter = (request.requested_by or "").strip()
    if "@" in starter and starter not in recipients:
        recipients.append(starter)
    return recipients


def expire_gate(approval_id: int, request: ApprovalRequest, reason: str) -> bool:
    """Close a still-pending gate as expired and tell everyone; False if it was decided."""
    from upkeep.tasks.notify import deliver_pending, queue_message, render_gate_notice

    settings = get_settings()
    with _db() as db:
        gate = db.get(Approval, approval_id)
        if gate is None or gate.decision is not None:
            return False
        close_gate(
            session=db, approval_id=approval_id, decision="expired", approver=None, comment=reason
        )
        escalated = db.exec(
            select(ApprovalEvent).where(
                ApprovalEvent.approval_id == approval_id, ApprovalEvent.kind == "escalated"
            )
        ).first()
        subject, text, html = render_gate_notice(
            templates_dir=settings.templates_dir,
            kind="expired",
            contract_code=request.contract,
            subject=request.subject,
            run_url=run_url(settings.prefect_ui_url, gate.flow_run_id),
            detail=reason,
            recipients_role="approvers and the engineer who started the run",
        )
        queue_message(
            session=db,
            contract_id=request.contract_id,
            kind="gate_expired",
            subject=subject,
            recipients=notice_recipients(request, escalated is not None),
            text_body=text,
            html_body=html,
        )
    with _db() as db:
        deliver_pending(session=db, smtp=settings.smtp)
    return True


def close_gates_of_run(flow_run_id: str, reason: str) -> list[int]:
    """Close every pending gate of ``flow_run_id`` as cancelled with ``reason`` (its run ended
    while the gate waited); the ids closed."""
    closed = []
    with _db() as db:
        for gate in _open_gates(db, flow_run_id):
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
        import logging

        logging.getLogger("upkeep.approvals").warning(
            "could not close the gates of flow run %s: %s", flow_run.id, exc
        )


def ended_state(state: Any) -> str:
    """How a run's final state reads in a reason: ``Cancelled: <its message>``."""
    return f"{state.name}: {state.message or 'no message'}"


def closed_reason(gate: Approval) -> str:
    return f"the gate {gate.gate!r} is closed ({gate.decision}: {gate.comment or 'no reason'})"


def expiry_reason(policy: GatePolicy, opened: datetime) -> str:
    return (
        f"approval gate expired: no decision {policy.expire_after_hours:g} h after it "
        f"opened ({opened:%Y-%m-%d %H:%M} UTC)"
    )


# --- the gate --------------------------------------------------------------------------------


def _result(gate: Approval) -> ApprovalResult:
    assert gate.id is not None and gate.decided_at is not None
    return ApprovalResult(
        approval_id=gate.id,
        decision=Decision(gate.decision or ""),
        approver=gate.approver or "",
        comment=gate.comment or "",
        decided_at=gate.decided_at,
    )


def request_approval(request: ApprovalRequest) -> ApprovalResult:
    """Open the gate (once), mail codes, and wait until it is approved or rejected.

    Re-entrant: a re-run of the flow (a suspended run after resume, or a retried run) gets
    the recorded decision of a decided gate at once, and a closed gate ends the run with
    :class:`GateClosed` and the reason instead of waiting on it again.
    """
    logger = get_run_logger()
    settings = get_settings()
    run_id, durable = _flow_run()
    approval_id = ensure_gate(
        run_id,
        key=request.key,
        gate=request.gate,
        subject=request.subject,
        evidence=request.evidence,
        contract_id=request.contract_id,
        requested_by=request.requested_by,
        policy=request.policy,
    )
    timeout_s = max(1, int(request.policy.expire_after_hours * 3600))
    while True:
        with _db() as db:
            gate = db.get(Approval, approval_id)
            assert gate is not None
            if gate.decision in DECISIONS:
                result = _result(gate)
                logger.info("%s: %s by %s", request.subject, result.decision.value, result.approver)
                return result
            if gate.decision is not None:
                error = ApprovalExpired if gate.decision == "expired" else GateClosed
                raise error(f"{request.subject}: {closed_reason(gate)}")
            events = _events(db, approval_id)
            escalated = any(e.kind == "escalated" for e in events)
            approved_by = [e.actor for e in events if e.kind == "approved" and e.actor]
            refusals = [e.detail for e in events if e.kind == "refused"]
            opened_at = gate.requested_at
        for person, role in deciders(request, escalated):
            send_codes(approval_id, request, [person], role, run_id)
        form = approval_form(answerable_names(request, approved_by)).with_initial_data(
            description=describe(
                request,
                refusals,
                approved_by=approved_by,
                escalated=escalated,
                opened_at=opened_at,
            )
        )
        logger.info(
            "waiting for approval of %s (approval %s, %s). Answer in the Prefect UI (%s) or: "
            "upkeep approve %s --as NAME --code CODE | upkeep reject %s --as NAME --code CODE "
            "--comment TEXT",
            request.subject,
            approval_id,
            "suspended" if durable else "paused",
            run_url(settings.prefect_ui_url, run_id),
            run_id,
            run_id,
        )
        try:
            attempt_key, answer = wait_for_answer(form, approval_id, request.key, timeout_s)
        except FlowPauseTimeout:
            with _db() as db:
                gate = db.get(Approval, approval_id)
                assert gate is not None
                reason = expiry_reason(request.policy, gate.requested_at)
            expire_gate(approval_id, request, reason)
            raise ApprovalExpired(f"{request.subject}: {reason}") from None
        if isinstance(answer, str):
            with _db() as db:
                verdict = _memo(db, approval_id, attempt_key) or _refuse(
                    db, approval_id, attempt_key, "(unknown)", answer
                )
        else:
            verdict = judge(approval_id, request, answer, attempt_key)
        if not verdict.accepted:
            logger.warning("refused an answer: %s", verdict.reason)
        elif verdict.final is None:
            logger.info("%s approved; more approvals needed", verdict.person)
