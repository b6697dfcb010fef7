"""The release checklist (PROCESSES.md, section 4), for a release declared with
``upkeep releases declare``.

1. Pre-release checks: the checklist's automatic items (the smoke checks green now, the target
   hosts healthy per the inspection catalogue, a verified backup fresh enough); a failure stops
   here with the reason.
2. The manual items, confirmed by a named person through a typed form (cancel ends it).
3. Release approval: the contract's release approvers at the ``release`` gate (M of N, no
   self-approval unless the contract allows it), with the test report, the changes, the
   checks' results and the confirmations as evidence.
4. At the window: the release command on the canary hosts, the smoke checks, a soak watching
   them, then the other hosts, and the verification straight after.
5. On a failure: every released host rolled back at once against the clock (from the moment
   the failure was detected to the rollback complete and verified, the contract's limit, 1 hour
   by default); a late or unverified rollback is a critical finding.
6. The mail after the release: what, when, every step and the result.

A run may start up to an hour before the window (for the checks and the approval) and waits
for the window before releasing. Every step is a ``releasestep`` row: who, when, what, the
evidence. Not yet: the separate test-report review, the notice before the window, the effect
report (see README).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task
from prefect.input import RunInput
from prefect.states import Cancelled, Failed, State
from pydantic import BaseModel, ConfigDict, Field

from upkeep.domain.approval_form import describe_refusals
from upkeep.domain.approvals import ApprovalRequest, ApprovalResult, Decision, GateClosed, Person
from upkeep.domain.releases import (
    CHECKLIST_GATE,
    RELEASE_GATE,
    missing_confirmations,
    release_markdown,
)
from upkeep.flows.approvals import request_approval, request_revision
from upkeep.flows.starting import start_or_refuse
from upkeep.models import utcnow
from upkeep.tasks.approval_records import close_gates_on_end
from upkeep.tasks.guards import Refused
from upkeep.tasks.release_run import (
    check_startable,
    finish_release,
    load_release,
    log_step,
    mail_release_result,
    pre_checks,
    roll_back,
    run_command,
    smoke,
    soak,
    start_release_run,
)
from upkeep.tasks.runs import current_flow_run_id, run_namer

EARLY_START = timedelta(hours=1)
"""How long before its window a release run may start (checks and approval first)."""


class ReleaseParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release_id: int = Field(description="The declared release (upkeep releases show)")
    requested_by: str | None = None
    soak_seconds: float | None = Field(
        None, ge=0, description="Override the system's soak time (seconds)"
    )
    email: bool = Field(True, description="Mail the result to the contract's recipients")


class ReleaseOutcome(BaseModel):
    release_id: int
    run_id: int
    status: str
    """released, rolled-back, rollback-failed."""
    outcome: str


class ChecklistConfirmation(RunInput):
    """The engineer's confirmation of the release's manual checklist items."""

    action: Literal["confirm", "cancel"] = Field(
        description="confirm the items you list, or cancel the release"
    )
    engineer: str = Field(min_length=1, max_length=200, description="Your name")
    confirmed: list[str] = Field(
        default_factory=list, description="The names of the items you confirm (all of them)"
    )
    note: str = Field("", max_length=2000, description="What you checked")


def _check_start(release_id: int) -> None:
    check_startable(release_id, current_flow_run_id())
    row = load_release(release_id)[0]
    if utcnow() < row.window_at - EARLY_START:
        raise Refused(
            f"release {release_id}'s window opens at {row.window_at.isoformat()}: a release run "
            f"starts at most {EARLY_START} before it"
        )


@task(name="record-confirmation")
def record_confirmation(release_id: int, engineer: str, items: list[str], note: str) -> None:
    """The manual items as confirmed, once (a replay finds the task's result)."""
    log_step(
        release_id,
        "confirmed",
        True,
        f"{', '.join(items)} confirmed" + (f": {note}" if note else ""),
        actor=engineer,
        detail={"items": items, "note": note},
    )


@task(name="record-release-decision")
def record_decision(release_id: int, result: ApprovalResult) -> None:
    log_step(
        release_id,
        "decision",
        result.decision is Decision.APPROVE,
        f"{result.decision.value} by {result.approver}"
        + (f": {result.comment}" if result.comment else ""),
        actor=result.approver,
        detail={"approval_id": result.approval_id, "decision": result.decision.value},
    )


def _confirm(release_id: int, manual: list[str], contract_id: int, subject: str) -> str | None:
    """Who confirmed every manual item, or None when the release was cancelled."""

    def describe(problems: list[str]) -> str:
        refused = describe_refusals(problems, heading="Your earlier answer was refused")
        return "\n".join(
            [
                f"**Confirm the manual checklist items of {subject}:** {', '.join(manual)}",
                "",
                *([refused, ""] if refused else []),
                "List every item you checked under *confirmed*, with your name; or cancel.",
            ]
        )

    def check(answer: ChecklistConfirmation) -> ChecklistConfirmation:
        missing = missing_confirmations(manual, answer.confirmed)
        if missing:
            raise ValueError(f"not confirmed: {', '.join(missing)}")
        return answer

    answer = request_revision(
        form=ChecklistConfirmation,
        gate=CHECKLIST_GATE,
        key=f"{CHECKLIST_GATE}-{release_id}",
        contract_id=contract_id,
        subject=f"confirm the checklist of {subject}",
        describe=describe,
        revise=check,
        how_to_answer="the Prefect UI's form of run RUN",
    )
    if answer is None:
        return None
    record_confirmation(release_id, answer.engineer, list(manual), answer.note)
    return answer.engineer


def _wait_for_window(release_id: int) -> None:
    row, _, _, _ = load_release(release_id)
    left = (row.window_at - utcnow()).total_seconds()
    if left > 0:
        get_run_logger().info("waiting %.0f s for the window (%s)", left, row.window_at)
        time.sleep(left)  # at most EARLY_START: the run may not start earlier


def _execute(release_id: int, run_id: int, soak_seconds: float) -> tuple[str, str]:
    """Canary, smoke, soak, the rest, verification; on the first failure everything released
    is rolled back against the clock. (status, what happened)."""
    row, _, _, _ = load_release(release_id)
    canary = list(row.canary_hosts)
    rest = [h for h in row.hosts if h not in canary]
    released: list[str] = []

    def failed(why: str) -> tuple[str, str]:
        detected = utcnow()
        log_step(release_id, "failure", False, why, started=detected)
        clock = roll_back(release_id, run_id, released, detected)
        status = "rolled-back" if clock.verified else "rollback-failed"
        return status, f"{why}; {clock.text()}"

    for host in canary:
        released.append(host)
        if not run_command(release_id, host, "release", row.version):
            return failed(f"the release command failed on canary host {host}")
    ok, summary = smoke(release_id, run_id, "smoke-canary")
    if not ok:
        return failed(f"smoke checks failed on the canary: {summary}")
    ok, summary = soak(release_id, run_id, soak_seconds)
    if not ok:
        return failed(f"smoke checks failed during the soak: {summary}")
    for host in rest:
        released.append(host)
        if not run_command(release_id, host, "release", row.version):
            return failed(f"the release command failed on {host}")
    ok, summary = smoke(release_id, run_id, "verify")
    if not ok:
        return failed(f"post-release verification failed: {summary}")
    return "released", f"released to {', '.join(row.hosts)} and verified: {summary}"


def _ended(release_id: int, run_id: int, status: str, message: str, cancelled: bool) -> State[Any]:
    finish_release(release_id, run_id, status)
    return (Cancelled if cancelled else Failed)(message=message)


@flow(
    name="release",
    flow_run_name=run_namer("release", lambda p: str(p.get("release_id"))),
    persist_result=True,
    on_cancellation=[close_gates_on_end],
    on_crashed=[close_gates_on_end],
)
def release(params: ReleaseParams) -> ReleaseOutcome | State[Any]:
    """Checks, confirmations, approval, canary, soak, the rest, verification, rollback, mail."""
    logger = get_run_logger()
    refused = start_or_refuse(lambda: _check_start(params.release_id))
    if isinstance(refused, State):
        return refused
    row, view, _, spec = load_release(params.release_id)
    rid = params.release_id
    subject = f"release {row.system} {row.version} ({view.code})"
    run_id = start_release_run(rid, params.requested_by)

    checks = pre_checks(rid, run_id)
    failed = [f"{name}: {summary}" for name, ok, summary in checks if not ok]
    if failed:
        logger.error("pre-release checks failed: %s", "; ".join(failed))
        return _ended(
            rid, run_id, "checks-failed", "pre-release checks failed: " + "; ".join(failed), False
        )

    manual = [i.name for i in spec.checklist if i.kind == "manual"]
    try:
        confirmed_by = _confirm(rid, manual, view.id, subject) if manual else ""
        if confirmed_by is None:
            return _ended(rid, run_id, "cancelled", "cancelled at the checklist", True)
        result = request_approval(
            ApprovalRequest(
                gate=RELEASE_GATE,
                key=f"{RELEASE_GATE}-{rid}",
                contract=view.code,
                contract_id=view.id,
                subject=subject,
                evidence=release_markdown(
                    contract=view.code,
                    system=row.system,
                    version=row.version,
                    changes=row.changes,
                    window=row.window_at.astimezone(ZoneInfo(view.timezone)).strftime(
                        "%Y-%m-%d %H:%M %Z"
                    ),
                    hosts=row.hosts,
                    canary=row.canary_hosts,
                    report_name=row.test_report_name,
                    report_sha256=row.test_report_sha256,
                    checks=checks,
                    confirmed=[(m, f"confirmed by {confirmed_by}") for m in manual],
                ),
                approvers=[Person(**p.model_dump()) for p in view.approvers],
                backup_approver=Person(**view.backup_approver.model_dump())
                if view.backup_approver
                else None,
                requested_by=params.requested_by,
                policy=view.policy(RELEASE_GATE),
                timezone=view.timezone,
            )
        )
    except GateClosed as exc:
        logger.warning("release ended at its gate: %s", exc)
        return _ended(rid, run_id, "cancelled", str(exc), exc.cancelled)
    record_decision(rid, result)
    if result.decision is not Decision.APPROVE:
        return _ended(
            rid, run_id, "rejected", f"rejected by {result.approver}: {result.comment}", True
        )

    _wait_for_window(rid)
    soak_seconds = spec.soak_minutes * 60 if params.soak_seconds is None else params.soak_seconds
    status, outcome = _execute(rid, run_id, soak_seconds)
    finish_release(rid, run_id, status)
    if params.email:
        mail_release_result(rid, status, outcome)
    result_model = ReleaseOutcome(release_id=rid, run_id=run_id, status=status, outcome=outcome)
    if status != "released":
        return Failed(message=f"release {status}: {outcome}", data=result_model)
    return result_model
