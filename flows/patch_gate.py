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
from prefect.input import RunInput
from pydantic import Field

from upkeep.domain.approval_form import describe_refusals
from upkeep.domain.approvals import ApprovalRequest, Decision, Person
from upkeep.domain.patching import (
    PLAN_GATE,
    RESPONSIVE_GATE,
    REVISION_GATE,
    PatchPlan,
    apply_revision,
    render_plan_markdown,
)
from upkeep.flows.approvals import request_approval, request_revision
from upkeep.tasks.patch_apply import finish_plan, record_decision
from upkeep.tasks.patch_survey import record_plan


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
    return request_revision(
        form=PatchRevision,
        gate=REVISION_GATE,
        key=f"{REVISION_GATE}-r{round_no}",
        contract_id=plan.contract_id,
        subject=f"revise the patch plan for {plan.contract}",
        describe=lambda problems: _revision_form(plan, rejection, problems),
        revise=lambda answer: apply_revision(plan, answer),
        how_to_answer="upkeep patches revise RUN --as NAME [--drop-host H] [--drop PKG] "
        "[--defer PKG] [--note TEXT] | --cancel",
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
