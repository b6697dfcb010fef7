"""The patch-advisory cycle (PROCESSES.md, 3): preventive on the contract's ``patch_advisory``
cadence, responsive after a fault. Nothing is installed without an approval on record for the
exact plan.

Preventive: fault statistics → inventory of every host over SSH → match against the synced
advisories → analysis (the host's installable candidate, severity, restart or reboot) → the
plan as an HTML report, artifacts and a mail to the customer → the customer's review at the
``patch-plan`` gate (rejected: revise → ask again) → report only, or apply: staging hosts
first, health checks before and after, inventories before and after, a re-match proving each
advisory closed; any failure rolls the host back, raises a finding, stops the rollout and
tells the customer.

Responsive: from a finding or a fault the engineer describes (hosts, suspected packages) →
the candidate updates of those packages → a test installation on the contract's staging hosts
→ the test report with the patch list to the customer → approval at ``patch-test-report`` →
apply to the affected hosts → verify → the finding resolved with the evidence.

Suspend/resume: every step before the gate is a task whose result the run keeps (the scans,
the plan, the report and its mail), so the re-run after an answer reads them back.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.states import Cancelled, Failed, State
from pydantic import BaseModel, ConfigDict, Field

from upkeep.db import open_session
from upkeep.domain.approvals import GateClosed
from upkeep.domain.patching import PatchPlan
from upkeep.flows.blackout import blackout_guard
from upkeep.flows.patch_gate import review_plan
from upkeep.flows.starting import start_or_refuse
from upkeep.models import Finding, FindingStatus, RunStatus, utcnow
from upkeep.tasks.approval_records import close_gates_on_end
from upkeep.tasks.patch_apply import (
    HostRollout,
    NotApproved,
    apply_host,
    check_approved,
    finish_plan,
    log_step,
)
from upkeep.tasks.patch_report import mail_patch_report, write_patch_report
from upkeep.tasks.patch_survey import (
    Scanned,
    build_patch_plan,
    check_patch_alone,
    contract_fault_statistics,
    contract_hosts,
    record_plan,
    scan_inventory,
    start_patch_run,
)
from upkeep.tasks.records import finish_run
from upkeep.tasks.runs import current_flow_run_id, run_namer

__all__ = ["PatchFixParams", "PatchOutcome", "PatchParams", "patch_advisory", "patch_fix"]


class PatchParams(BaseModel):
    """The preventive cycle of one contract."""

    model_config = ConfigDict(extra="forbid")

    contract: str = Field(description="Contract code, as in the inventory")
    hosts: list[str] = Field(default_factory=list, description="Only these hosts (default: all)")
    mode: Literal["report", "apply"] | None = Field(
        None, description="report only, or apply once approved (default: as the contract says)"
    )
    email_report: bool = Field(True, description="Mail the plan and the result to the customer")
    requested_by: str | None = Field(None, description="Who started the run")


class PatchFixParams(BaseModel):
    """The responsive path: a fault a missing patch caused."""

    model_config = ConfigDict(extra="forbid")

    contract: str = Field(description="Contract code, as in the inventory")
    hosts: list[str] = Field(min_length=1, description="The hosts with the fault")
    packages: list[str] = Field(min_length=1, description="The packages suspected (binary names)")
    symptom: str = Field(min_length=1, max_length=2000, description="What went wrong")
    finding_id: int | None = Field(None, description="The finding this fixes, if any")
    mode: Literal["report", "apply"] | None = Field(
        None, description="report only, or apply once approved (default: as the contract says)"
    )
    email_report: bool = Field(True, description="Mail the test report and the result")
    requested_by: str | None = Field(None, description="Who started the run")


class PatchOutcome(BaseModel):
    run_id: int
    plan_id: int
    plan_hash: str
    status: str
    report_path: str
    updates: int
    hosts: list[dict[str, Any]] = []
    """What the rollout did per host (host, ok, summary, rolled_back, reboot_needed)."""
    not_surveyed: dict[str, str] = {}
    """Host -> why it is not in the plan (unreachable, unreadable, no records synced)."""


patch_run_name = run_namer("patch advisory", lambda _: date.today().isoformat())
fix_run_name = run_namer("patch fix", lambda p: ", ".join(p.get("packages") or []))


def _refused_start(contract: str, hosts: list[str]) -> State[Any] | None:
    """Why this run must not start, as its end state (``flows.starting``); this run takes
    the contract's patch claim otherwise."""

    def check() -> None:
        contract_hosts(contract, hosts or None)
        check_patch_alone(contract, current_flow_run_id())

    refused = start_or_refuse(check)
    return refused if isinstance(refused, State) else None


def _survey(contract: str, names: list[str]) -> list[Scanned]:
    hosts = contract_hosts(contract, names or None)
    futures = [scan_inventory.submit(host_id, name) for host_id, name in hosts]
    return [f.result() for f in futures]


def _rollout(plan: PatchPlan, plan_id: int, run_id: int) -> list[HostRollout]:
    """Staging hosts first, then production, one host at a time; the first failure stops."""
    check_approved(plan_id, plan)
    done: list[HostRollout] = []
    for host in plan.ordered_hosts():
        result = apply_host(plan_id, run_id, host, host.host)
        done.append(result)
        if not result.ok:
            rest = [h.host for h in plan.ordered_hosts()[len(done) :]]
            if rest:
                log_step(
                    plan_id,
                    "stopped",
                    False,
                    f"rollout stopped after {host.host} failed; not touched: {', '.join(rest)}",
                )
            break
    return done


def _end(
    run_id: int,
    plan_id: int,
    plan: PatchPlan,
    status: str,
    email: bool,
    changes: dict[str, list[str]] | None = None,
    outcome: str | None = None,
    done: list[HostRollout] | None = None,
) -> PatchOutcome:
    finish_plan(plan_id, status)
    with open_session() as db:
        finish_run(
            session=db,
            run_id=run_id,
            status=RunStatus.FAILED if status == "failed" else RunStatus.COMPLETED,
        )
    report = write_patch_report(plan_id, status, changes)
    if email and outcome:
        mail_patch_report(plan_id, report, outcome=outcome)
    return PatchOutcome(
        run_id=run_id,
        plan_id=plan_id,
        plan_hash=plan.digest(),
        status=status,
        report_path=report,
        updates=plan.items,
        hosts=[r.__dict__ for r in done or []],
        not_surveyed=dict(plan.not_scanned),
    )


def _review_and_apply(
    plan: PatchPlan,
    plan_id: int,
    run_id: int,
    requested_by: str | None,
    email: bool,
    changes: dict[str, list[str]],
) -> PatchOutcome | State[Any]:
    """The customer's review, then report only or the rollout; the end recorded either way."""
    logger = get_run_logger()
    try:
        reviewed = review_plan(plan, plan_id, run_id, requested_by)
    except GateClosed as exc:
        logger.warning("patch plan ended at its gate: %s", exc)
        finish_plan(plan_id, "cancelled")
        with open_session() as db:
            finish_run(session=db, run_id=run_id, status=RunStatus.FAILED)
        return (Cancelled if exc.cancelled else Failed)(message=str(exc))
    if reviewed is None:
        _end(run_id, plan_id, plan, "cancelled", False, changes)
        return Cancelled(message="patch plan cancelled after rejection")
    plan, plan_id = reviewed
    if plan.mode == "report":
        outcome = _end(
            run_id,
            plan_id,
            plan,
            "report-only",
            email,
            changes,
            outcome="approved; report only: upkeep installs nothing, the provider installs the "
            "approved versions by hand",
        )
        return outcome
    try:
        done = _rollout(plan, plan_id, run_id)
    except NotApproved as exc:
        logger.error("refused to apply: %s", exc)
        _end(run_id, plan_id, plan, "failed", False, changes)
        return Failed(message=f"refused to apply: {exc}")
    failed = [r for r in done if not r.ok]
    status = "failed" if failed else "applied"
    reboots = [r.host for r in done if r.reboot_needed]
    text = (
        f"FAILED on {failed[0].host}: {failed[0].summary}"
        + (" (previous versions restored)" if failed[0].rolled_back else "")
        if failed
        else f"{sum(1 for r in done)} host(s) updated and verified"
        + (f"; a reboot is needed on {', '.join(reboots)}" if reboots else "")
    )
    outcome = _end(run_id, plan_id, plan, status, email, changes, outcome=text, done=done)
    if failed:
        return Failed(message=f"patch rollout {text}", data=outcome)
    return outcome


@flow(
    name="patch-advisory",
    flow_run_name=patch_run_name,
    persist_result=True,
    on_cancellation=[close_gates_on_end],
    on_crashed=[close_gates_on_end],
)
def patch_advisory(params: PatchParams) -> PatchOutcome | State[Any]:
    """Survey, plan, have the customer review the plan, then report only or apply it."""
    logger = get_run_logger()
    if (ended := blackout_guard(params.contract)) is not None:
        return ended
    if (refused := _refused_start(params.contract, params.hosts)) is not None:
        return refused
    run_id = start_patch_run(params.contract, params.requested_by, "preventive")
    statistics = contract_fault_statistics(params.contract)
    scanned = _survey(params.contract, params.hosts)
    plan = build_patch_plan(params.contract, scanned, statistics)
    if params.mode:
        plan = plan.model_copy(update={"mode": params.mode})
    plan_id = record_plan(plan, run_id)
    changes = {s.host: s.changes for s in scanned}
    if plan.empty:
        outcome = _end(run_id, plan_id, plan, "nothing-to-do", False, changes)
        if params.email_report:
            mail_patch_report(plan_id, outcome.report_path)
        logger.info("no installable update needed: %s", outcome.report_path)
        return outcome
    report = write_patch_report(plan_id, "proposed", changes)
    if params.email_report:
        mail_patch_report(
            plan_id,
            report,
            decide="Your approvers receive a separate message with their link and code.",
        )
    return _review_and_apply(
        plan, plan_id, run_id, params.requested_by, params.email_report, changes
    )


@flow(
    name="patch-fix",
    flow_run_name=fix_run_name,
    persist_result=True,
    on_cancellation=[close_gates_on_end],
    on_crashed=[close_gates_on_end],
)
def patch_fix(params: PatchFixParams) -> PatchOutcome | State[Any]:
    """Test the candidate update of the suspected packages on staging, have the customer
    approve the test report and patch list, apply it to the affected hosts, resolve the
    finding."""
    logger = get_run_logger()
    if (refused := _refused_start(params.contract, params.hosts)) is not None:
        return refused
    affected = contract_hosts(params.contract, params.hosts)
    everyone = contract_hosts(params.contract)
    run_id = start_patch_run(params.contract, params.requested_by, "responsive")
    statistics = contract_fault_statistics(params.contract)
    names = {name for _, name in affected}
    futures = [scan_inventory.submit(host_id, name) for host_id, name in everyone]
    scanned = [f.result() for f in futures]
    surveyed = build_patch_plan(
        params.contract,
        scanned,
        statistics,
        kind="responsive",
        symptom=params.symptom,
        finding_id=params.finding_id,
        packages=params.packages,
    )
    if params.mode:
        surveyed = surveyed.model_copy(update={"mode": params.mode})
    staging = [
        h for h in surveyed.hosts if h.stage == "staging" and h.items and h.host not in names
    ]
    plan = surveyed.model_copy(
        update={
            "hosts": [h for h in surveyed.hosts if h.host in names],
            "not_scanned": {h: w for h, w in surveyed.not_scanned.items() if h in names},
        }
    )
    changes = {s.host: s.changes for s in scanned}
    if plan.empty:
        plan_id = record_plan(plan, run_id)
        logger.error("no newer version of %s on %s", ", ".join(params.packages), ", ".join(names))
        _end(run_id, plan_id, plan, "nothing-to-do", False, changes)
        return Failed(
            message=f"no newer version of {', '.join(params.packages)} is offered to "
            f"{', '.join(sorted(names))}: nothing to test or apply"
        )
    # The test: the same updates on the staging hosts first (revision 0 of this run's plans).
    tests: dict[str, str] = {}
    if staging:
        trial = surveyed.model_copy(update={"hosts": staging, "revision": 0, "unavailable": []})
        trial_id = record_plan(trial, run_id)
        for host in staging:
            tried = apply_host(trial_id, run_id, host, host.host)
            tests[host.host] = ("passed: " if tried.ok else "FAILED: ") + tried.summary
        finish_plan(trial_id, "tested")
    plan = plan.model_copy(update={"tests": tests})
    plan_id = record_plan(plan, run_id)
    report = write_patch_report(plan_id, "proposed", changes)
    if params.email_report:
        mail_patch_report(
            plan_id,
            report,
            decide="The test report and the patch list are attached; your approvers receive a "
            "separate message with their link and code.",
        )
    result = _review_and_apply(
        plan, plan_id, run_id, params.requested_by, params.email_report, changes
    )
    if isinstance(result, PatchOutcome) and result.status == "applied" and params.finding_id:
        resolve_finding(params.finding_id, run_id, result)
    return result


def resolve_finding(finding_id: int, run_id: int, outcome: PatchOutcome) -> None:
    """The fault's finding resolved by this run, the patch as the evidence."""
    with open_session() as db:
        finding = db.get(Finding, finding_id)
        if finding is None:
            return
        finding.status = FindingStatus.RESOLVED
        finding.resolved_at = utcnow()
        finding.resolved_by_run_id = run_id
        finding.evidence = (
            f"{finding.evidence}\nresolved by patch plan {outcome.plan_id} "
            f"({outcome.plan_hash}): {outcome.updates} update(s) applied and verified"
        ).strip()
        db.add(finding)
    log_step(
        outcome.plan_id,
        "finding-resolved",
        True,
        f"finding {finding_id} resolved by this patch",
        detail={"finding_id": finding_id},
    )
