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
from prefect.input import RunInput
from pydantic import Field

from upkeep.domain.approval_form import describe_refusals
from upkeep.domain.approvals import ApprovalRequest, Decision, Person
from upkeep.domain.inspection import (
    PLAN_GATE,
    REVISION_GATE,
    InspectionPlan,
    PlanHost,
    apply_revision,
    render_plan_markdown,
    render_revision_body,
)
from upkeep.flows.approvals import request_approval, request_revision


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
    """Wait until the engineer revises the rejected plan (or cancels: None); a recorded
    revision is applied again on a re-run (pure)."""
    return request_revision(
        form=PlanRevision,
        gate=REVISION_GATE,
        key=f"{REVISION_GATE}-r{round_no}",
        contract_id=plan.contract_id,
        subject=f"revise the inspection plan for {plan.contract}",
        describe=lambda problems: render_revision_form(plan, rejection, problems),
        revise=lambda answer: apply_revision(plan, answer, all_hosts),
        how_to_answer="upkeep revise RUN --as NAME [--exclude HOST] [--window W] "
        "[--note TEXT] | --cancel",
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
