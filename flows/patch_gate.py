"""The patch plan's gate: plan → customer review → (rejected: revision → review)*.

The customer's approvers answer at the ``patch-plan`` gate (the responsive path's at
``patch-test-report``); each answer is recorded on the plan's row with the hash of the plan
they saw (:func:`upkeep.tasks.patch_apply.record_decision`). A rejection sends the plan to the
engineer at the ``patch-plan-revision`` gate, who drops hosts or packages, defers some, or
cancels; the revised plan (a new row, a new hash) is asked again. Re-entrant like every gate:
a resumed run finds each answer on record and applies a recorded revision again (pure).
"""

from __future__ import annotations

from typing import Literal

from prefect import get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from pydantic import Field

from upkeep.domain.approval_form import describe_refusals
from upkeep.domain.approvals import ApprovalRequest, Decision, GateClosed, Person, closed_reason
from upkeep.domain.contract import GatePolicy
from upkeep.domain.patching import (
    PLAN_GATE,
    RESPONSIVE_GATE,
    REVISION_GATE,
    PatchPlan,
    apply_revision,
    render_plan_markdown,
)
from upkeep.flows.approvals import request_approval
from upkeep.settings import get_settings
from upkeep.tasks.approval_records import close_approval, ensure_gate, record_once, refusal_reasons
from upkeep.tasks.inspection_plan import record_revision, revision_gate
from upkeep.tasks.patch_apply import finish_plan, record_decision
from upkeep.tasks.patch_survey import record_plan
from upkeep.tasks.pause import wait_for_answer
from upkeep.tasks.runs import current_flow_run_id


class PatchRevision(RunInput):
    """The engineer's answer to a rejected patch plan: change it and resubmit, or cancel."""

    action: Literal["resubmit", "cancel"] = Field(
        description="resubmit the revised plan for review, or cancel this patch cycle"
    )
    engineer: str = Field(min_length=1, max_length=200, description="Your name")
    drop_hosts: list[str] = Field(default_factory=list, description="Hosts to leave out")
    drop_packages: list[str] = Field(
        default_factory=list,
        description="Packages to leave out: PACKAGE (every host) or HOST:PACKAGE",
    )
    defer: list[str] = Field(
        default_factory=list,
        description="Packages to defer to a later cycle: PACKAGE or HOST:PACKAGE (the note is "
        "the reason)",
    )
    note: str = Field("", max_length=2000, description="What you changed and why")


def _revision_form(plan: PatchPlan, rejection: str, problems: list[str]) -> str:
    refused = describe_refusals(problems, heading="Your earlier answer was refused")
    return "\n".join(
        [
            f"**The customer rejected the plan:** {rejection}",
            "",
            *([refused, ""] if refused else []),
            "Drop hosts or packages, or defer packages to a later cycle, then resubmit; or "
            "cancel. Answer here, or: `upkeep patches revise RUN --as NAME [--drop-host H] "
            "[--drop PKG] [--defer PKG] [--note TEXT] | --cancel`",
            "",
            render_plan_markdown(plan),
        ]
    )


def revise_patch_plan(plan: PatchPlan, rejection: str, round_no: int) -> PatchPlan | None:
    """Wait until the engineer revises the rejected plan (or cancels: None)."""
    settings = get_settings()
    run_id = current_flow_run_id() or ""
    key = f"{REVISION_GATE}-r{round_no}"
    approval_id = ensure_gate(
        run_id,
        key=key,
        gate=REVISION_GATE,
        contract_id=plan.contract_id,
        subject=f"revise the patch plan for {plan.contract}",
        evidence=_revision_form(plan, rejection, []),
        policy=GatePolicy(
            escalate_after_hours=None, expire_after_hours=settings.approval_timeout_hours
        ),
    )
    while True:
        gate, recorded = revision_gate(approval_id)
        if gate.decision == "cancel":
            return None
        if recorded is not None:
            return apply_revision(plan, PatchRevision.model_validate_json(recorded))
        if gate.decision is not None:
            raise GateClosed(
                f"revision of the patch plan for {plan.contract}: {closed_reason(gate)}"
            )
        form = PatchRevision.with_initial_data(
            description=_revision_form(plan, rejection, refusal_reasons(approval_id))
        )
        get_run_logger().info(
            "patch plan rejected; waiting for the revision. Answer in the Prefect UI, or: "
            "upkeep patches revise %s --as NAME [--drop-host H] [--drop PKG] [--defer PKG] "
            "[--note TEXT] | --cancel",
            run_id,
        )
        try:
            attempt_key, answer = wait_for_answer(
                form, approval_id, key, int(settings.approval_timeout_hours * 3600)
            )
        except FlowPauseTimeout:
            close_approval(approval_id, "expired", None, "no revision in time")
            raise
        if isinstance(answer, str):
            record_once(approval_id, attempt_key, "refused", "(unknown)", answer)
            continue
        if answer.action == "cancel":
            record_once(
                approval_id, attempt_key, "decided", answer.engineer, answer.note, decision="cancel"
            )
            continue
        try:
            apply_revision(plan, answer)
        except ValueError as exc:
            record_once(approval_id, attempt_key, "refused", answer.engineer, str(exc))
            continue
        detail = PatchRevision.model_validate(answer.model_dump()).model_dump_json()
        record_revision(approval_id, answer.engineer, detail, attempt_key)
        record_once(
            approval_id, attempt_key, "decided", answer.engineer, answer.note, decision="resubmit"
        )


def review_plan(
    plan: PatchPlan, plan_id: int, run_id: int, requested_by: str | None
) -> tuple[PatchPlan, int] | None:
    """Loop plan → customer review → (revision → review)*: the approved plan and its row, or
    None when the engineer cancelled. Every plan shown is stored first (its own row and hash)."""
    logger = get_run_logger()
    gate = RESPONSIVE_GATE if plan.kind == "responsive" else PLAN_GATE
    what = "patch test report" if plan.kind == "responsive" else "patch plan"
    round_no = 0
    while True:
        round_no += 1
        result = request_approval(
            ApprovalRequest(
                gate=gate,
                key=f"{gate}-r{round_no}",
                contract=plan.contract,
                contract_id=plan.contract_id,
                subject=f"{what} {plan.contract} (revision {plan.revision}, "
                f"{plan.items} update(s))",
                evidence=render_plan_markdown(plan),
                approvers=[Person(**p) for p in plan.approvers],
                backup_approver=Person(**plan.backup_approver) if plan.backup_approver else None,
                requested_by=requested_by,
                policy=plan.policy,
                timezone=plan.timezone,
            )
        )
        record_decision(plan_id, result, plan.digest())
        if result.decision is Decision.APPROVE:
            logger.info("%s approved by %s (%s)", what, result.approver, plan.digest())
            return plan, plan_id
        logger.info("%s rejected by %s: %s", what, result.approver, result.comment)
        revised = revise_patch_plan(plan, f"{result.approver}: {result.comment}", round_no)
        if revised is None:
            finish_plan(plan_id, "cancelled")
            return None
        plan = revised
        plan_id = record_plan(plan, run_id)
