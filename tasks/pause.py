"""Waiting for an answer at a gate: the resume form, and Prefect's suspend and pause.

A run started from a deployment *suspends* (no process waits; on resume the flow re-runs from
the top); one started interactively *pauses* and polls. Each form is opened under a fresh
random pause key recorded as a ``waiting`` event first, so a re-run reads only the answer to
the newest open form, and an answer planted under that key without a resume is removed
(:func:`clear_planted_answer`). The gate's records are kept by
:mod:`upkeep.tasks.approval_records`; the rules are in :mod:`upkeep.domain.approvals`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any, Literal, TypeVar
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import Abort, FlowPauseTimeout, ObjectNotFound, PrefectHTTPStatusError
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from prefect.input.actions import read_flow_run_input
from prefect.input.run_input import (
    keyset_from_base_key,
    keyset_from_paused_state,
    run_input_subclass_from_type,
)
from prefect.states import Cancelled, Paused
from prefect.utilities.engine import propose_state_sync
from pydantic import Field, ValidationError, create_model

from upkeep.domain.approvals import Decision, GateClosed, ended_state, pending_attempt
from upkeep.settings import get_settings
from upkeep.tasks.approval_records import (
    close_gates_of_run,
    pending_form,
    record_planted,
    record_waiting,
)

R = TypeVar("R", bound=RunInput)


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


def flow_run() -> tuple[str, bool]:
    """(this flow run's id, whether it came from a deployment and can be suspended)."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        raise RuntimeError("an approval gate runs inside a flow run")
    return str(ctx.flow_run.id), ctx.flow_run.deployment_id is not None


def wait_for(form: type[R], key: str, timeout_s: int) -> R:
    """Suspend (deployment runs) or pause (interactive runs) until the form is answered."""
    _, durable = flow_run()
    if durable:
        return suspend_flow_run(wait_for_input=form, key=key, timeout=None)
    return pause_and_poll(form, key, timeout_s)


def pause_and_poll(form: type[R], key: str, timeout_s: int) -> R:
    """Prefect's ``pause_flow_run(wait_for_input=...)``, except that a run cancelled (from
    the UI) or ended while it waits leaves at once: its pending gates are closed with the
    reason and :class:`GateClosed` is raised (Prefect's own loop would wait for the timeout).
    """

    run_id, _ = flow_run()
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
                raise_if_run_ended(run_id)
    raise FlowPauseTimeout("Flow run was paused and never resumed.")


def response_key(pause_key: str, suspended: bool = True) -> str:
    """The input key Prefect's resume stores the answer under for a form opened with
    ``pause_key`` (state name, pause key, ``-response``; see prefect.input.run_input)."""

    base = f"{'suspended' if suspended else 'paused'}-{pause_key}"
    return keyset_from_base_key(base)["response"]


def fired_pause_keys(run_id: str) -> set[str]:

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
    return set(run.empirical_policy.pause_keys or set())


def parse_answer(form: type[R], raw: Any) -> R | str:
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

    run_id, durable = flow_run()
    key = pending_attempt(pending_form(approval_id))
    if key is not None and durable:
        raw = read_flow_run_input(response_key(key), flow_run_id=UUID(run_id))
        if raw is not None:
            return key, parse_answer(form, raw)
        if key in fired_pause_keys(run_id):
            key = None  # the run left that form without an answer: open a new one
    if key is None:
        key = f"{gate_key}-{secrets.token_hex(8)}"
        record_waiting(approval_id, key)
    try:
        return key, wait_for(form, key, timeout_s)
    except ValidationError as exc:
        return key, f"the answer was not valid ({exc.error_count()} error(s))"


def raise_if_run_ended(run_id: str) -> None:
    """GateClosed (the run's pending gates closed with the reason) if the run was cancelled
    or ended while its gate waited."""

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
    record_planted(flow_run_id)
    return True


def run_end_reason(flow_run_id: str) -> str | None:
    """Why the run of a pending gate can no longer answer it, or None while it can."""
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
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
        if state is not None and state.is_final():
            return  # it ended by itself (an interactive run's own deadline)
        client.set_flow_run_state(UUID(flow_run_id), Cancelled(message=reason), force=True)
