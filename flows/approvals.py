"""The approval gate every process uses: ask, check who answered, record, ask again if needed.

A gate is its own sub-flow run ("approval · inspection-plan · ACME"), so each request is a
visible object in the Prefect UI with the evidence as its resume form's description. The
gate pauses with a typed :class:`ApprovalInput`; whoever resumes it must be one of the names
allowed on the gate. Anything else (an unknown approver, a rejection without a reason, input
that does not validate) is recorded as a refused attempt and the gate asks again. The gate ends
only with an approval or a rejection by an allowed approver, or when it times out.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import get_run_context
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models import utcnow
from tasks.gates import close_gate, log_event, open_gate
from upkeep.db import engine_for, session_scope
from upkeep.settings import get_settings


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class ApprovalInput(RunInput):
    """The resume form. No field has a default: an empty resume is never an approval."""

    decision: Decision = Field(description="approve, or reject to send it back")
    approver: str = Field(
        min_length=1, max_length=200, description="Your name (or e-mail) as the contract lists it"
    )
    comment: str = Field(
        default="", max_length=4000, description="Required when you reject: what must change"
    )


class ApprovalRequest(BaseModel):
    """What a gate asks, of whom."""

    model_config = ConfigDict(extra="forbid")

    gate: str = Field(description="Which gate: inspection-plan, release, ...")
    contract: str
    contract_id: int | None = None
    subject: str
    evidence: str = Field(description="Markdown shown to the approver")
    approvers: list[dict[str, str]] = Field(min_length=1, description="[{name, email}]")
    timeout_seconds: int | None = None
    parent_flow_run_id: str | None = Field(None, description="The run of the process that asks")


class ApprovalResult(BaseModel):
    approval_id: int
    decision: Decision
    approver: str
    comment: str
    decided_at: datetime


class ApprovalExpired(RuntimeError):
    pass


def allowed_approver(claimed: str, approvers: list[dict[str, str]]) -> str | None:
    """The canonical name of the approver ``claimed`` names (by name or e-mail), or None."""
    wanted = claimed.strip().casefold()
    for person in approvers:
        if wanted in (
            person.get("name", "").strip().casefold(),
            person.get("email", "").strip().casefold(),
        ):
            return person["name"]
    return None


def judge(answer: ApprovalInput, approvers: list[dict[str, str]]) -> tuple[str | None, str]:
    """Decide whether an answer counts: (canonical approver, "") or (None, why it is refused)."""
    name = allowed_approver(answer.approver, approvers)
    if name is None:
        allowed = ", ".join(p["name"] for p in approvers)
        return None, f"{answer.approver!r} is not an approver of this gate (allowed: {allowed})"
    if answer.decision is Decision.REJECT and not answer.comment.strip():
        return None, "a rejection needs a comment saying what must change"
    return name, ""


def describe(request: ApprovalRequest, refusals: list[str]) -> str:
    names = ", ".join(p["name"] for p in request.approvers)
    lines = [
        f"## Approval needed: {request.subject}",
        "",
        request.evidence.rstrip(),
        "",
        "---",
        f"**Who may decide:** {names}.",
        "Choose *approve* or *reject*, give your name as listed, and say why when you reject.",
    ]
    if refusals:
        lines += ["", "**Earlier answers that were refused:**"]
        lines += [f"- {r}" for r in refusals[-5:]]
    return "\n".join(lines)


def run_url(ui_url: str, flow_run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}"


def _current_flow_run_id() -> str:
    ctx: Any = get_run_context()
    return str(ctx.flow_run.id)


def approval_run_name() -> str:
    from prefect.runtime import flow_run

    req = flow_run.parameters.get("request") or {}
    if isinstance(req, BaseModel):
        req = req.model_dump()
    return f"approval · {req.get('gate', '?')} · {req.get('contract', '?')}"


def record_approval(**values: Any) -> int:
    """Open a gate (an Approval row with its 'opened' event) and return its id."""
    with session_scope(engine_for(get_settings().db_url)) as db:
        row = open_gate(session=db, **values)
        assert row.id is not None
        return row.id


def close_approval(approval_id: int, decision: str, approver: str | None, comment: str) -> None:
    """Record a gate's decision (or its expiry) and the event."""
    with session_scope(engine_for(get_settings().db_url)) as db:
        close_gate(
            session=db,
            approval_id=approval_id,
            decision=decision,
            approver=approver,
            comment=comment,
        )


def refuse_answer(approval_id: int, claimed: str, reason: str) -> None:
    """Record an answer that does not count; the gate keeps waiting."""
    with session_scope(engine_for(get_settings().db_url)) as db:
        log_event(
            session=db, approval_id=approval_id, kind="refused", actor=claimed[:200], detail=reason
        )


@flow(name="approval", flow_run_name=approval_run_name)
def approval_gate(request: ApprovalRequest) -> ApprovalResult:
    """Wait until an allowed approver approves or rejects; record every request and answer."""
    logger = get_run_logger()
    settings = get_settings()
    run_id = _current_flow_run_id()
    timeout = request.timeout_seconds or int(settings.approval_timeout_hours * 3600)
    approval_id = record_approval(
        flow_run_id=run_id,
        parent_flow_run_id=request.parent_flow_run_id,
        contract_id=request.contract_id,
        gate=request.gate,
        subject=request.subject,
        evidence=request.evidence,
    )
    refusals: list[str] = []
    attempt = 0
    while True:
        attempt += 1
        form = ApprovalInput.with_initial_data(description=describe(request, refusals))
        logger.info(
            "waiting for approval of %s (approval %s). Answer in the Prefect UI (%s), or: "
            "upkeep approve %s --as NAME [--comment TEXT] | upkeep reject %s --as NAME "
            "--comment TEXT",
            request.subject,
            approval_id,
            run_url(settings.prefect_ui_url, run_id),
            run_id,
            run_id,
        )
        try:
            answer = pause_flow_run(
                wait_for_input=form,
                timeout=timeout,
                poll_interval=settings.approval_poll_seconds,
                key=f"{request.gate}-{attempt}",
            )
        except FlowPauseTimeout:
            close_approval(approval_id, "expired", None, f"no decision within {timeout} s")
            raise ApprovalExpired(f"{request.subject}: no decision within {timeout} s") from None
        except ValidationError as exc:
            reason = f"the answer was not a valid approval: {exc.error_count()} error(s)"
            refuse_answer(approval_id, "(unknown)", reason)
            refusals.append(reason)
            logger.warning("refused an answer: %s", reason)
            continue
        name, reason = judge(answer, request.approvers)
        if name is None:
            refuse_answer(approval_id, answer.approver, reason)
            refusals.append(reason)
            logger.warning("refused an answer: %s", reason)
            continue
        decided_at = utcnow()
        close_approval(approval_id, answer.decision.value, name, answer.comment.strip())
        logger.info("%s: %s by %s", request.subject, answer.decision.value, name)
        return ApprovalResult(
            approval_id=approval_id,
            decision=answer.decision,
            approver=name,
            comment=answer.comment.strip(),
            decided_at=decided_at,
        )
