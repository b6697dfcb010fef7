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

Where the parts live: the rules, pure and unit-tested, in :mod:`upkeep.domain.approvals`
(``verdict`` judges one answer) and the form's text in :mod:`upkeep.domain.approval_form`; the
gate's records and mail in :mod:`upkeep.tasks.approval_records`; the resume form, suspend and
pause in :mod:`upkeep.tasks.pause`. Import each name from the module that defines it (the
old names of a persisted run resolve through :mod:`upkeep.compat`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar, cast

from prefect import get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput

from upkeep.domain.approval_form import describe
from upkeep.domain.approvals import (
    DECISIONS,
    ApprovalExpired,
    ApprovalRequest,
    ApprovalResult,
    GateClosed,
    answerable_names,
    closed_reason,
    expiry_reason,
    roles,
)
from upkeep.domain.contract import GatePolicy
from upkeep.domain.naming import run_url
from upkeep.settings import get_settings
from upkeep.tasks.approval_records import (
    close_approval,
    ensure_gate,
    expire_gate,
    gate_state,
    judge,
    record_once,
    refusal_reasons,
    refuse_unreadable,
    send_codes,
)
from upkeep.tasks.gates import record_revision, revision_gate
from upkeep.tasks.pause import approval_form, flow_run, wait_for_answer
from upkeep.tasks.runs import current_flow_run_id


def request_approval(request: ApprovalRequest) -> ApprovalResult:
    """Open the gate (once), mail codes, and wait until it is approved or rejected.

    Re-entrant: a re-run of the flow (a suspended run after resume, or a retried run) gets
    the recorded decision of a decided gate at once, and a closed gate ends the run with
    :class:`GateClosed` and the reason instead of waiting on it again.
    """
    logger = get_run_logger()
    settings = get_settings()
    run_id, durable = flow_run()
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
        # 1. The gate as its records say: decided, closed, or still waiting.
        state = gate_state(approval_id)
        gate = state.gate
        if gate.decision in DECISIONS:
            result = state.result()
            logger.info("%s: %s by %s", request.subject, result.decision.value, result.approver)
            return result
        if gate.decision is not None:
            error = ApprovalExpired if gate.decision == "expired" else GateClosed
            raise error(f"{request.subject}: {closed_reason(gate)}")
        # 2. A code to everyone who may decide now and has none yet (once per person).
        for person, role in roles(request, state.escalated):
            send_codes(approval_id, request, [person], role, run_id)
        # 3. The form: who may still answer, and what they need to know first.
        form = approval_form(answerable_names(request, state.approved_by)).with_initial_data(
            description=describe(
                request,
                state.refusals,
                approved_by=state.approved_by,
                escalated=state.escalated,
                opened_at=gate.requested_at,
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
        # 4. Wait (suspend or pause) for one answer; no answer in time expires the gate.
        try:
            attempt_key, answer = wait_for_answer(form, approval_id, request.key, timeout_s)
        except FlowPauseTimeout:
            reason = expiry_reason(request.policy, gate.requested_at)
            expire_gate(approval_id, request, reason)
            raise ApprovalExpired(f"{request.subject}: {reason}") from None
        # 5. Judge it once and record the verdict; then read the gate again.
        if isinstance(answer, str):
            verdict = refuse_unreadable(approval_id, attempt_key, answer)
        else:
            verdict = judge(approval_id, request, answer, attempt_key)
        if not verdict.accepted:
            logger.warning("refused an answer: %s", verdict.reason)
        elif verdict.final is None:
            logger.info("%s approved; more approvals needed", verdict.person)


class Revision(Protocol):
    """What every revision form has (``PlanRevision``, ``PatchRevision``, ...)."""

    @property
    def action(self) -> str: ...
    @property
    def engineer(self) -> str: ...
    @property
    def note(self) -> str: ...


F = TypeVar("F", bound=RunInput)
T = TypeVar("T")


def request_revision(
    *,
    form: type[F],
    gate: str,
    key: str,
    contract_id: int,
    subject: str,
    describe: Callable[[list[str]], str],
    revise: Callable[[F], T],
    how_to_answer: str,
) -> T | None:
    """The engineer's answer to a rejected plan: ``revise(answer)`` (the revised plan), or
    None when the engineer cancelled.

    ``describe(problems)`` is the form's text (with why earlier answers were refused);
    ``revise`` is pure and raises ``ValueError`` for a revision that cannot be applied (the
    answer is refused with that reason and the form asked again). Re-entrant like every gate:
    a re-run finds the recorded revision and applies it again; a closed gate (expired: the
    watchdog enforces ``approval_timeout_hours`` in deployment runs too) raises GateClosed.
    """
    settings = get_settings()
    run_id = current_flow_run_id() or ""
    approval_id = ensure_gate(
        run_id,
        key=key,
        gate=gate,
        contract_id=contract_id,
        subject=subject,
        evidence=describe([]),
        policy=GatePolicy(
            escalate_after_hours=None, expire_after_hours=settings.approval_timeout_hours
        ),
    )
    while True:
        state, recorded = revision_gate(approval_id)
        if state.decision == "cancel":
            return None
        if recorded is not None:
            return revise(form.model_validate_json(recorded))
        if state.decision is not None:
            raise GateClosed(f"{subject}: {closed_reason(state)}")
        asked = form.with_initial_data(description=describe(refusal_reasons(approval_id)))
        get_run_logger().info(
            "%s: waiting for the revision. Answer in the Prefect UI, or: %s",
            subject,
            how_to_answer.replace("RUN", run_id),
        )
        try:
            attempt_key, answer = wait_for_answer(
                asked, approval_id, key, int(settings.approval_timeout_hours * 3600)
            )
        except FlowPauseTimeout:
            close_approval(approval_id, "expired", None, "no revision in time")
            raise
        if isinstance(answer, str):
            record_once(approval_id, attempt_key, "refused", "(unknown)", answer)
            continue
        said = cast(Revision, answer)
        if said.action == "cancel":
            record_once(
                approval_id, attempt_key, "decided", said.engineer, said.note, decision="cancel"
            )
            continue
        try:
            revise(answer)
        except ValueError as exc:
            record_once(approval_id, attempt_key, "refused", said.engineer, str(exc))
            continue
        detail = form.model_validate(answer.model_dump()).model_dump_json()
        record_revision(approval_id, said.engineer, detail, attempt_key)
        record_once(
            approval_id, attempt_key, "decided", said.engineer, said.note, decision="resubmit"
        )
