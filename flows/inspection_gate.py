"""The inspection plan's gate: plan → approval → (rejected: revision → approval)*.

The approvers answer the plan at the ``inspection-plan`` gate; a rejection sends it to the
engineer at the ``inspection-plan-revision`` gate, who resubmits it changed (hosts excluded
or brought back, another window) or cancels the inspection. Both gates are re-entrant: a run
resumed after a suspension re-runs this loop from the top and finds every answer already on
record (``upkeep.domain.inspection.apply_revision`` applies a recorded revision again).
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
from upkeep.domain.inspection import (
    PLAN_GATE,
    REVISION_GATE,
    InspectionPlan,
    PlanHost,
    apply_revision,
    render_plan_markdown,
    render_revision_body,
)
from upkeep.flows.approvals import request_approval
from upkeep.settings import get_settings
from upkeep.tasks.approval_records import close_approval, ensure_gate, record_once, refusal_reasons
from upkeep.tasks.inspection_plan import record_revision, revision_gate
from upkeep.tasks.pause import wait_for_answer
from upkeep.tasks.runs import current_flow_run_id


class PlanRevision(RunInput):
    """The engineer's answer to a rejected plan: change it and resubmit, or cancel."""

    action: Literal["resubmit", "cancel"] = Field(
        description="resubmit the revised plan for approval, or cancel the inspection"
    )
    engineer: str = Field(min_length=1, max_length=200, description="Your name")
    exclude_hosts: list[str] = Field(
        default_factory=list, description="Host names to leave out of the inspection"
    )
    include_hosts: list[str] = Field(
        default_factory=list, description="Excluded host names to bring back"
    )
    window: str | None = Field(None, max_length=200, description="A new inspection window")
    note: str = Field("", max_length=2000, description="What you changed and why")


def render_revision_form(plan: InspectionPlan, rejection: str, problems: list[str]) -> str:
    """The revision form's description: the rejection, what was wrong with an earlier answer,
    what to do, then the plan compactly, one line per host (fits a normal window)."""
    refused = describe_refusals(problems, heading="Your earlier answer was refused")
    return render_revision_body(plan, rejection, refused)


def revise_plan(
    plan: InspectionPlan, all_hosts: list[PlanHost], rejection: str, round_no: int
) -> InspectionPlan | None:
    """Wait until the engineer revises the rejected plan (or cancels: None).

    Re-entrant like every gate: a re-run finds the recorded revision and applies it again
    (pure), a closed revision gate (expired: the watchdog enforces ``approval_timeout_hours``
    in deployment runs too) ends the run with the reason.
    """
    settings = get_settings()
    run_id = current_flow_run_id() or ""
    key = f"{REVISION_GATE}-r{round_no}"
    approval_id = ensure_gate(
        run_id,
        key=key,
        gate=REVISION_GATE,
        contract_id=plan.contract_id,
        subject=f"revise the inspection plan for {plan.contract}",
        evidence=render_revision_form(plan, rejection, []),
        policy=GatePolicy(
            escalate_after_hours=None, expire_after_hours=settings.approval_timeout_hours
        ),
    )
    while True:
        gate, recorded = revision_gate(approval_id)
        if gate.decision == "cancel":
            return None
        if recorded is not None:
            return apply_revision(plan, PlanRevision.model_validate_json(recorded), all_hosts)
        if gate.decision is not None:
            raise GateClosed(f"revision of the plan for {plan.contract}: {closed_reason(gate)}")
        form = PlanRevision.with_initial_data(
            description=render_revision_form(plan, rejection, refusal_reasons(approval_id))
        )
        get_run_logger().info(
            "plan rejected; waiting for the revision. Answer in the Prefect UI, or: upkeep "
            "revise %s --as NAME [--exclude HOST] [--window W] [--note TEXT] | --cancel",
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
            apply_revision(plan, answer, all_hosts)
        except ValueError as exc:
            record_once(approval_id, attempt_key, "refused", answer.engineer, str(exc))
            continue
        detail = PlanRevision.model_validate(answer.model_dump()).model_dump_json()
        record_revision(approval_id, answer.engineer, detail, attempt_key)
        record_once(
            approval_id, attempt_key, "decided", answer.engineer, answer.note, decision="resubmit"
        )


def approve_plan(plan: InspectionPlan, requested_by: str | None) -> InspectionPlan | None:
    """Loop plan → approval → (revision → approval)* ; the approved plan, or None if cancelled."""
    logger = get_run_logger()
    all_hosts = list(plan.hosts)
    round_no = 0
    while True:
        round_no += 1
        result = request_approval(
            ApprovalRequest(
                gate=PLAN_GATE,
                key=f"{PLAN_GATE}-r{round_no}",
                contract=plan.contract,
                contract_id=plan.contract_id,
                subject=f"health inspection plan {plan.contract} {plan.window} "
                f"(revision {plan.revision})",
                evidence=render_plan_markdown(plan),
                approvers=[Person(**p) for p in plan.approvers],
                backup_approver=Person(**plan.backup_approver) if plan.backup_approver else None,
                requested_by=requested_by,
                policy=plan.policy,
                timezone=plan.timezone,
            )
        )
        if result.decision is Decision.APPROVE:
            logger.info("plan approved by %s", result.approver)
            return plan
        logger.info("plan rejected by %s: %s", result.approver, result.comment)
        revised = revise_plan(plan, all_hosts, f"{result.approver}: {result.comment}", round_no)
        if revised is None:
            return None
        plan = revised
