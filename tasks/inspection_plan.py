"""The inspection's steps that touch the records: may it start, the plan from the inventory,
the pre-check, the run's record, the re-check's targets, the report and its mail.

Thin wrappers: the decisions are in ``upkeep.domain.inspection``, the records in
``upkeep.tasks.records``, the report in ``upkeep.tasks.reports``. Every step the flow runs
before its plan gate is a persisted task (``build-plan``, ``preflight-host``) or only reads,
so a run resumed after the gate replays them safely.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from sqlmodel import col, select

from upkeep.db import open_session
from upkeep.domain.approvals import unapprovable
from upkeep.domain.checks import CATALOGUE
from upkeep.domain.contract import ContractView
from upkeep.domain.inspection import (
    PLAN_GATE,
    HostTarget,
    InspectionPlan,
    PlanHost,
    default_window,
    plan_needs_approval,
    recheck_targets,
    render_recheck_markdown,
)
from upkeep.domain.markup import md_escape
from upkeep.domain.naming import artifact_key
from upkeep.models import (
    Contract,
    Finding,
    FindingStatus,
    Host,
    InspectionRun,
    RunStatus,
)
from upkeep.settings import get_settings
from upkeep.tasks.guards import (
    Refused,
    hosts_for_run,
    refuse_if_running,
)
from upkeep.tasks.inspect import preflight_host
from upkeep.tasks.notify import Mail, mail_recipients, render_report_email
from upkeep.tasks.records import (
    RecordNotFound,
    finish_run,
    get_contract,
    get_customer,
    hosts_in_scope,
    start_run,
)
from upkeep.tasks.render import (
    findings_table,
    render_inspection_html,
    render_inspection_markdown,
    save_report,
)
from upkeep.tasks.reports import build_inspection_report
from upkeep.tasks.runs import current_flow_run_id

# --- may it start ------------------------------------------------------------------------------


def check_inventory_allows(
    contract_code: str, tags: list[str], require_approval: bool | None, requested_by: str | None
) -> int:
    """The contract's id; Refused when the records say this inspection cannot run: unknown
    or inactive contract, no host in scope, a plan that needs approval nobody could give."""
    with open_session() as db:
        try:
            contract = get_contract(session=db, code=contract_code)
        except RecordNotFound as exc:
            raise Refused(str(exc)) from None
        hosts_for_run(session=db, contract=contract, tags=tags)
        view = ContractView.of(contract)
    needs_approval = plan_needs_approval(view.plan_requires_approval, require_approval)
    why = unapprovable(view.approvers, view.backup_approver, view.policy(PLAN_GATE), requested_by)
    if needs_approval and why is not None:
        raise Refused(f"the plan of {contract_code} needs approval, but {why}")
    return view.id


def check_alone(contract: str, contract_id: int, me: str | None) -> None:
    """AlreadyRunning when another inspection of the contract is under way: one plan and one
    gate per contract at a time. The run ``me`` takes the contract's claim; None only asks."""
    refuse_if_running("inspection", contract, contract_id, me)


# --- the plan ------------------------------------------------------------------------------------


@task(name="build-plan")
def build_plan(
    contract_code: str, tags: list[str], window: str | None, require_approval: bool | None
) -> InspectionPlan:
    """The plan from the inventory: hosts in scope, checks, thresholds, window."""
    with open_session() as db:
        contract = get_contract(session=db, code=contract_code)
        customer = get_customer(session=db, contract=contract)
        hosts = hosts_in_scope(session=db, contract=contract, tags=tags)
        if not hosts:
            scope = f" with tags {', '.join(tags)}" if tags else ""
            raise ValueError(f"contract {contract_code} has no active hosts{scope} to inspect")
        view = ContractView.of(contract)
        today = datetime.now(ZoneInfo(view.timezone)).date()
        return InspectionPlan(
            contract=view.code,
            contract_id=view.id,
            contract_name=view.name,
            customer=customer.name,
            timezone=view.timezone,
            window=window or default_window(today),
            hosts=[
                PlanHost(
                    id=h.id,
                    name=h.name,
                    address=h.address,
                    port=h.port,
                    role=h.role,
                    tags=list(h.tags),
                )
                for h in hosts
                if h.id is not None
            ],
            checks=[(c.name, c.title) for c in CATALOGUE],
            thresholds=view.thresholds.model_dump(),
            # The plan is a persisted result a resumed run reads back: people stay plain dicts.
            approvers=[p.model_dump() for p in view.approvers],
            backup_approver=view.backup_approver.model_dump() if view.backup_approver else None,
            policy=view.policy(PLAN_GATE),
            requires_approval=plan_needs_approval(view.plan_requires_approval, require_approval),
        )


def with_preflight(plan: InspectionPlan) -> InspectionPlan:
    """The plan with each host's pre-check, so the approver sees who can be reached."""
    futures = {h.name: preflight_host.submit(host_id=h.id, host_name=h.name) for h in plan.hosts}
    return plan.model_copy(update={"preflight": {n: f.result() for n, f in futures.items()}})


# --- the run's record ----------------------------------------------------------------------------


def start_inspection(plan: InspectionPlan, requested_by: str | None) -> int:
    """Record the approved plan's run; its id. Runs after the gate, once."""
    with open_session() as db:
        contract = get_contract(session=db, code=plan.contract)
        run = start_run(
            session=db,
            contract=contract,
            kind="inspection",
            flow_run_id=current_flow_run_id(),
            requested_by=requested_by,
            window=plan.window,
            plan=plan.model_dump(mode="json"),
        )
        assert run.id is not None
        return run.id


def finish(run_id: int, status: RunStatus) -> None:
    with open_session() as db:
        finish_run(session=db, run_id=run_id, status=status)


# --- re-check ------------------------------------------------------------------------------------


def start_recheck(
    contract_code: str, requested_by: str | None
) -> tuple[int, list[HostTarget], dict[int, str], int]:
    """Record a re-check run of the contract's open findings on its active hosts:
    (run id, targets, active host names by id, open findings re-checked)."""
    with open_session() as db:
        contract = get_contract(session=db, code=contract_code)
        open_findings = db.exec(
            select(Finding).where(
                Finding.contract_id == contract.id, Finding.status == FindingStatus.OPEN
            )
        ).all()
        active = {
            h.id: h.name
            for h in db.exec(
                select(Host).where(Host.contract_id == contract.id, col(Host.active).is_(True))
            )
            if h.id is not None
        }
        on_active = [f for f in open_findings if f.host_id in active]
        targets = recheck_targets(on_active, active)
        run = start_run(
            session=db,
            contract=contract,
            kind="recheck",
            flow_run_id=current_flow_run_id(),
            requested_by=requested_by,
            plan={"targets": [t.model_dump() for t in targets]},
        )
        assert run.id is not None
        return run.id, targets, active, len(on_active)


def publish_recheck_difference(contract_code: str, run_id: int, host_names: dict[int, str]) -> None:
    """The re-check's difference (resolved by the run, still open) as a Markdown artifact."""
    with open_session() as db:
        contract = get_contract(session=db, code=contract_code)
        resolved = db.exec(select(Finding).where(Finding.resolved_by_run_id == run_id)).all()
        still = db.exec(
            select(Finding).where(
                Finding.contract_id == contract.id, Finding.status == FindingStatus.OPEN
            )
        ).all()
        markdown = render_recheck_markdown(contract_code, run_id, resolved, still, host_names)
    create_markdown_artifact(markdown=markdown, description="Re-check difference")


# --- report and e-mail ---------------------------------------------------------------------------


@task(name="write-report")
def write_report(run_id: int) -> str:
    """Render the run's HTML report, save it, publish the UI artifacts; returns the file path."""
    settings = get_settings()
    with open_session() as db:
        report = build_inspection_report(session=db, run_id=run_id)
        run = db.get(InspectionRun, run_id)
        contract = db.get(Contract, run.contract_id) if run else None
        assert run is not None and contract is not None
        html = render_inspection_html(
            report, settings.templates_dir, prefect_ui_url=settings.prefect_ui_url
        )
        path = save_report(
            html,
            report_dir=settings.reports,
            contract_code=contract.code,
            run_id=run_id,
            started_at=run.started_at,
        )
        run.report_path = str(path)
        db.add(run)
    create_markdown_artifact(
        markdown=render_inspection_markdown(report, path.as_uri()),
        key=artifact_key("inspection", contract.code),
        description=f"Health inspection {md_escape(contract.code)}",
    )
    create_table_artifact(
        table=findings_table(report),
        key=artifact_key("inspection", contract.code, "findings"),
        description=f"Findings of inspection run {run_id}",
    )
    return str(path)


@task(name="email-report")
def email_report(run_id: int, report_path: str) -> dict[str, Any]:
    """Queue the report for the contract's recipients, then deliver everything pending."""
    settings = get_settings()
    with open_session() as db:
        run = db.get(InspectionRun, run_id)
        assert run is not None
        contract = db.get(Contract, run.contract_id)
        assert contract is not None
        code = contract.code

    def compose() -> Mail:
        with open_session() as db:
            report = build_inspection_report(session=db, run_id=run_id)
        subject, text, html = render_report_email(report, report_path, settings.templates_dir)
        return Mail(subject, text, html, (report_path,))

    return mail_recipients(code, "inspection_report", compose, smtp=settings.smtp)
