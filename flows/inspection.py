"""The quarterly health inspection and the re-check of open findings (PROCESSES.md, 1).

Inspection: may it start → plan (hosts in scope, checks, window) → pre-check of every host →
plan approval (rejected: revise → ask again; ``upkeep.flows.inspection_gate``) → sweep (the
finding lifecycle records each problem as each host is stored) → report (file + UI
artifacts) → e-mail (opt-in, via the outbox, so a mail server that is down loses nothing).

Re-check: run only the checks with open findings, resolve what is fixed, report the
difference.

Suspend/resume: a deployment run suspends at the plan gate and re-runs this flow from the top
when answered. Every step before the gate is a persisted task (``build-plan``,
``preflight-host``) or only reads, so the replay is safe; the run's record is written after
the gate.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Cancelled, Failed, State
from pydantic import BaseModel, ConfigDict, Field

from upkeep.domain.approvals import GateClosed
from upkeep.domain.inspection import HostTarget, quarter_of
from upkeep.flows.blackout import blackout_guard
from upkeep.flows.inspection_gate import approve_plan
from upkeep.flows.starting import start_or_refuse
from upkeep.flows.sweep import sweep_and_finish
from upkeep.tasks.approval_records import close_gates_on_end
from upkeep.tasks.inspection_plan import (
    build_plan,
    check_alone,
    email_report,
    publish_recheck_difference,
    start_inspection,
    start_recheck,
    with_preflight,
    write_report,
)
from upkeep.tasks.inspection_plan import (
    check_inventory_allows as _inventory_allows,
)
from upkeep.tasks.runs import current_flow_run_id, run_namer


class InspectionParams(BaseModel):
    """What to inspect and what to do with the result. Sending mail is opt-in."""

    model_config = ConfigDict(extra="forbid")

    contract: str = Field(description="Contract code, as in the inventory")
    tags: list[str] = Field(default_factory=list, description="Only hosts with any of these tags")
    window: str | None = Field(
        None, description="The inspection window agreed with the customer (default: this quarter)"
    )
    email_report: bool = Field(False, description="E-mail the report to the contract's recipients")
    require_approval: bool | None = Field(
        None, description="Ask for plan approval (default: as the contract says)"
    )
    requested_by: str | None = Field(None, description="Who started the run")


class RecheckParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contract: str = Field(description="Contract code, as in the inventory")
    email_report: bool = Field(False, description="E-mail the re-check report")
    requested_by: str | None = Field(None, description="Who started the run")


class InspectionOutcome(BaseModel):
    run_id: int
    report_path: str
    hosts: int
    unreachable: list[str]
    email: dict[str, Any] | None = None


inspection_run_name = run_namer("inspection", lambda _: quarter_of(date.today()))
"""``inspection · ACME · 2026-Q4``."""
recheck_run_name = run_namer("re-check", lambda _: date.today().isoformat())
"""``re-check · ACME · 2026-11-30``."""


def check_inventory_allows(params: InspectionParams) -> int:
    """The contract's id; Refused when the records say this inspection cannot run."""
    return _inventory_allows(
        params.contract, params.tags, params.require_approval, params.requested_by
    )


def check_start(params: InspectionParams, me: str | None) -> None:
    """Refused (naming why) when this inspection must not start: unknown or inactive contract,
    no host in scope, a plan nobody could approve, or another inspection of the contract under
    way. The CLI asks before it creates the run (``me`` None); the flow run ``me`` asks again at
    its start and takes the contract's claim."""
    check_alone(params.contract, check_inventory_allows(params), me)


def sweep_report_mail(
    run_id: int, contract: str, targets: list[HostTarget], email: bool
) -> InspectionOutcome:
    """Inspect the targets, end the run's record, write the report, mail it if asked."""
    sweep = sweep_and_finish(run_id, contract, targets)
    report_path = write_report(run_id)
    mail = email_report(run_id, report_path) if email else None
    return InspectionOutcome(
        run_id=run_id,
        report_path=report_path,
        hosts=len(targets),
        unreachable=sweep.unreachable,
        email=mail,
    )


@flow(
    name="inspection",
    flow_run_name=inspection_run_name,
    persist_result=True,
    on_cancellation=[close_gates_on_end],
    on_crashed=[close_gates_on_end],
)
def quarterly_health_inspection(params: InspectionParams) -> InspectionOutcome | State[Any]:
    """Plan, get the plan approved, inspect every host, report, and (if asked) e-mail it."""
    logger = get_run_logger()
    refused = start_or_refuse(lambda: check_start(params, current_flow_run_id()))
    if isinstance(refused, State):
        return refused
    if (ended := blackout_guard(params.contract)) is not None:
        return ended
    plan = build_plan(params.contract, params.tags, params.window, params.require_approval)
    if plan.requires_approval:
        plan = with_preflight(plan)
        try:
            approved = approve_plan(plan, params.requested_by)
        except GateClosed as exc:  # expired, or the run was cancelled while it waited
            logger.warning("inspection ended at its gate: %s", exc)
            return (Cancelled if exc.cancelled else Failed)(message=str(exc))
        if approved is None:
            logger.info("inspection cancelled by the engineer")
            return Cancelled(message="inspection plan cancelled after rejection")
        plan = approved
    run_id = start_inspection(plan, params.requested_by)
    outcome = sweep_report_mail(run_id, plan.contract, plan.targets(), params.email_report)
    logger.info("report: %s", outcome.report_path)
    return outcome


@flow(name="recheck", flow_run_name=recheck_run_name, persist_result=True)
def recheck_findings(params: RecheckParams) -> InspectionOutcome | State[Any]:
    """Re-run only the checks with open findings and resolve what is fixed."""
    if (ended := blackout_guard(params.contract)) is not None:
        return ended
    run_id, targets, host_names, open_count = start_recheck(params.contract, params.requested_by)
    get_run_logger().info("re-checking %d open finding(s) on %d host(s)", open_count, len(targets))
    outcome = sweep_report_mail(run_id, params.contract, targets, params.email_report)
    publish_recheck_difference(params.contract, run_id, host_names)
    return outcome
