"""The quarterly health inspection and the re-check of open findings.

Plan → plan approval (reject → revise → ask again) → sweep → compare (the finding lifecycle
does it as each host is stored) → report (file + UI artifacts) → e-mail (opt-in, via the
outbox, so a mail server that is down loses nothing).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from prefect.states import Cancelled, Failed, State
from pydantic import BaseModel, ConfigDict, Field

from upkeep.db import engine_for, open_session, session_scope
from upkeep.domain.checks import CATALOGUE
from upkeep.domain.contract import GatePolicy, policy_for
from upkeep.domain.markup import md_escape
from upkeep.flows.approvals import (
    ApprovalRequest,
    Decision,
    GateClosed,
    close_approval,
    close_gates_on_end,
    ensure_gate,
)
from upkeep.flows.blackout import blackout_guard
from upkeep.flows.sweep import HostTarget, SweepResult, sweep_hosts
from upkeep.models import Contract, Finding, FindingStatus, InspectionRun, RunStatus
from upkeep.settings import get_settings
from upkeep.tasks.findings import REACHABILITY
from upkeep.tasks.gates import (
    log_event,
)
from upkeep.tasks.guards import (
    Refused,
    already_running_message,
    claim,
    holder_of,
    hosts_for_run,
    unapprovable,
)
from upkeep.tasks.notify import Mail, mail_recipients, render_report_email
from upkeep.tasks.records import (
    contract_thresholds,
    finish_run,
    get_contract,
    get_customer,
    hosts_in_scope,
    start_run,
)
from upkeep.tasks.reports import build_inspection_report
from upkeep.tasks.runs import current_flow_run_id

PLAN_GATE = "inspection-plan"
REVISION_GATE = "inspection-plan-revision"
PRECHECK_CHARS = 120
"""A host's pre-check result is cut to this many characters in the forms."""


# --- parameters and plan ---------------------------------------------------------------------


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


def quarter_of(day: date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def default_window(day: date) -> str:
    q = (day.month - 1) // 3
    start = date(day.year, 3 * q + 1, 1)
    end = date(day.year + (q == 3), (3 * q + 3) % 12 + 1, 1)
    last = date.fromordinal(end.toordinal() - 1)
    return f"{quarter_of(day)} ({start.isoformat()} – {last.isoformat()})"


def inspection_run_name() -> str:
    from prefect.runtime import flow_run

    params = flow_run.parameters.get("params") or {}
    if isinstance(params, BaseModel):
        params = params.model_dump()
    return f"inspection · {params.get('contract', '?')} · {quarter_of(date.today())}"


class PlanHost(BaseModel):
    id: int
    name: str
    address: str
    port: int
    role: str | None = None
    tags: list[str] = []


class InspectionPlan(BaseModel):
    contract: str
    contract_id: int
    contract_name: str
    customer: str
    timezone: str
    window: str
    hosts: list[PlanHost]
    excluded: list[str] = []
    checks: list[tuple[str, str]]
    thresholds: dict[str, Any]
    approvers: list[dict[str, str]]
    backup_approver: dict[str, str] | None = None
    policy: GatePolicy = GatePolicy()
    requires_approval: bool
    preflight: dict[str, str] = {}
    """Host name -> "ok" or why upkeep could not log in, checked before approval."""
    revision: int = 1
    notes: list[str] = []

    def host_names(self) -> list[str]:
        return [h.name for h in self.hosts]


def render_plan_markdown(plan: InspectionPlan) -> str:
    """The plan as the approver sees it in the resume form and the e-mail.

    Every value from the inventory goes through ``md_escape``, so a host or contract name
    holding Markdown or HTML shows as text.
    """
    lines = [
        f"### Health inspection plan · {md_escape(plan.customer)} · {md_escape(plan.contract)} "
        f"(revision {plan.revision})",
        "",
        f"- **Contract:** {md_escape(plan.contract_name)} ({md_escape(plan.contract)})",
        f"- **Window:** {md_escape(plan.window)} ({md_escape(plan.timezone)})",
        f"- **Method:** read-only commands over SSH, host keys verified; {len(plan.checks)} checks",
        f"- **Hosts in scope:** {len(plan.hosts)}",
        "",
        "| host | address | role | tags | pre-check |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {md_escape(h.name)} | {md_escape(f'{h.address}:{h.port}')} | "
        f"{md_escape(h.role or '')} | {md_escape(', '.join(h.tags))} | "
        f"{md_escape(plan.preflight.get(h.name, 'not checked'), limit=PRECHECK_CHARS)} |"
        for h in plan.hosts
    ]
    if plan.excluded:
        lines += ["", f"**Excluded from this inspection:** {md_escape(', '.join(plan.excluded))}"]
    lines += ["", "**Checks:** " + md_escape(", ".join(title for _, title in plan.checks))]
    changed = {k: v for k, v in plan.thresholds.items() if v is not None}
    if changed:
        lines += [
            "",
            "**Contract thresholds:** "
            + md_escape(", ".join(f"{k}={v}" for k, v in sorted(changed.items()))),
        ]
    if plan.notes:
        lines += ["", "**Revision notes:**"] + [f"- {md_escape(n)}" for n in plan.notes]
    return "\n".join(lines)


def render_revision_form(plan: InspectionPlan, rejection: str, problems: list[str]) -> str:
    """The revision form's description: the rejection, what was wrong with an earlier answer,
    what to do, then the plan compactly, one line per host (fits a normal window)."""
    from upkeep.flows.approvals import describe_refusals

    # No heading or quote block: the UI shows this in a short scrolling box above the fields.
    lines = [f"**The plan (revision {plan.revision}) was rejected:** {md_escape(rejection)}"]
    refused = describe_refusals(problems, heading="Your earlier answer was refused")
    if refused:
        lines += ["", refused]
    lines += [
        "",
        "Exclude hosts, change the window and **resubmit**, or **cancel** the inspection. "
        "Give your name as *engineer* and say what you changed in *note*.",
        "",
        "---",
        f"**{md_escape(plan.contract)}** · {md_escape(plan.customer)} · window "
        f"{md_escape(plan.window)} ({md_escape(plan.timezone)}) · {len(plan.hosts)} host(s) · "
        f"{len(plan.checks)} checks",
        "",
    ]
    for h in plan.hosts:
        role = f" · {md_escape(h.role)}" if h.role else ""
        check = md_escape(plan.preflight.get(h.name, "not checked"), limit=PRECHECK_CHARS // 2)
        address = md_escape(f"{h.address}:{h.port}")
        lines.append(f"- {md_escape(h.name)} · {address}{role} · pre-check: {check}")
    if plan.excluded:
        lines += ["", f"**Excluded:** {md_escape(', '.join(plan.excluded))}"]
    if plan.notes:
        lines += ["", f"**Earlier revisions:** {md_escape('; '.join(plan.notes), limit=400)}"]
    return "\n".join(lines)


@task(name="build-plan")
def build_plan(params: InspectionParams) -> InspectionPlan:
    """The plan from the inventory: hosts in scope, checks, thresholds, window."""
    engine = engine_for(get_settings().db_url)
    with session_scope(engine) as db:
        contract = get_contract(session=db, code=params.contract)
        customer = get_customer(session=db, contract=contract)
        hosts = hosts_in_scope(session=db, contract=contract, tags=params.tags)
        if not hosts:
            scope = f" with tags {', '.join(params.tags)}" if params.tags else ""
            raise ValueError(f"contract {params.contract} has no active hosts{scope} to inspect")
        today = datetime.now(ZoneInfo(contract.timezone)).date()
        assert contract.id is not None
        return InspectionPlan(
            contract=contract.code,
            contract_id=contract.id,
            contract_name=contract.name,
            customer=customer.name,
            timezone=contract.timezone,
            window=params.window or default_window(today),
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
            thresholds=contract_thresholds(contract).model_dump(),
            approvers=list(contract.approvers),
            backup_approver=contract.backup_approver,
            policy=policy_for(contract.approval_policy, contract.gate_policies, PLAN_GATE),
            requires_approval=(
                contract.plan_requires_approval
                if params.require_approval is None
                else params.require_approval
            ),
        )


def with_preflight(plan: InspectionPlan) -> InspectionPlan:
    """The plan with each host's pre-check, so the approver sees who can be reached."""
    from upkeep.tasks.inspect import preflight_host

    futures = {h.name: preflight_host.submit(host_id=h.id, host_name=h.name) for h in plan.hosts}
    return plan.model_copy(update={"preflight": {n: f.result() for n, f in futures.items()}})


# --- revision after a rejection ----------------------------------------------------------------


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


def apply_revision(
    plan: InspectionPlan, revision: PlanRevision, all_hosts: list[PlanHost]
) -> InspectionPlan:
    """The revised plan, or ValueError naming what cannot be applied. Pure."""
    by_name = {h.name: h for h in all_hosts}
    unknown = sorted(set(revision.exclude_hosts + revision.include_hosts) - set(by_name))
    if unknown:
        raise ValueError(f"unknown host(s): {', '.join(unknown)}")
    excluded = (set(plan.excluded) | set(revision.exclude_hosts)) - set(revision.include_hosts)
    hosts = [h for h in all_hosts if h.name not in excluded]
    if not hosts:
        raise ValueError("the revision leaves no host to inspect")
    note = revision.note.strip() or "revised"
    return plan.model_copy(
        update={
            "hosts": hosts,
            "excluded": sorted(excluded),
            "window": revision.window.strip() if revision.window else plan.window,
            "revision": plan.revision + 1,
            "notes": [*plan.notes, f"rev {plan.revision + 1} by {revision.engineer}: {note}"],
        }
    )


def revise_plan(
    plan: InspectionPlan, all_hosts: list[PlanHost], rejection: str, round_no: int
) -> InspectionPlan | None:
    """Wait until the engineer revises the rejected plan (or cancels: None).

    Re-entrant like every gate: a re-run finds the recorded revision and applies it again
    (pure), a closed revision gate (expired: the watchdog enforces ``approval_timeout_hours``
    in deployment runs too) ends the run with the reason.
    """
    from sqlmodel import col, select

    from upkeep.flows.approvals import (
        GateClosed,
        closed_reason,
        record_once,
        refusal_reasons,
        wait_for_answer,
    )
    from upkeep.models import Approval, ApprovalEvent

    settings = get_settings()
    run_id = current_flow_run_id() or ""
    evidence = render_revision_form(plan, rejection, [])
    key = f"{REVISION_GATE}-r{round_no}"
    approval_id = ensure_gate(
        run_id,
        key=key,
        gate=REVISION_GATE,
        contract_id=plan.contract_id,
        subject=f"revise the inspection plan for {plan.contract}",
        evidence=evidence,
        policy=GatePolicy(
            escalate_after_hours=None, expire_after_hours=settings.approval_timeout_hours
        ),
    )
    engine = engine_for(settings.db_url)
    while True:
        with session_scope(engine) as db:
            gate = db.get(Approval, approval_id)
            assert gate is not None
            if gate.decision == "cancel":
                return None
            if gate.decision == "resubmit":
                recorded = db.exec(
                    select(ApprovalEvent)
                    .where(
                        ApprovalEvent.approval_id == approval_id, ApprovalEvent.kind == "revision"
                    )
                    .order_by(col(ApprovalEvent.id).desc())
                ).first()
                assert recorded is not None
                return apply_revision(
                    plan, PlanRevision.model_validate_json(recorded.detail), all_hosts
                )
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
        with session_scope(engine) as db:
            log_event(
                session=db,
                approval_id=approval_id,
                kind="revision",
                actor=answer.engineer[:200],
                detail=PlanRevision.model_validate(answer.model_dump()).model_dump_json(),
                attempt_key=attempt_key,
            )
        record_once(
            approval_id, attempt_key, "decided", answer.engineer, answer.note, decision="resubmit"
        )


def approve_plan(plan: InspectionPlan, requested_by: str | None) -> InspectionPlan | None:
    """Loop plan → approval → (revision → approval)* ; the approved plan, or None if cancelled."""
    from upkeep.flows.approvals import Person, request_approval

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


# --- report and e-mail --------------------------------------------------------------------------


@task(name="write-report")
def write_report(run_id: int) -> str:
    """Render the run's HTML report, save it, publish the UI artifacts; returns the file path."""
    from upkeep.tasks.reports import (
        build_inspection_report,
        findings_table,
        render_inspection_html,
        render_inspection_markdown,
        save_report,
    )

    settings = get_settings()
    engine = engine_for(settings.db_url)
    with session_scope(engine) as db:
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
    url = path.as_uri()
    key = f"inspection-{contract.code.lower()}".replace("_", "-").replace(".", "-")
    create_markdown_artifact(
        markdown=render_inspection_markdown(report, url),
        key=key,
        description=f"Health inspection {md_escape(contract.code)}",
    )
    create_table_artifact(
        table=findings_table(report),
        key=f"{key}-findings",
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


# --- the flows -----------------------------------------------------------------------------------


def _start(plan: InspectionPlan, kind: str, requested_by: str | None) -> int:
    engine = engine_for(get_settings().db_url)
    with session_scope(engine) as db:
        contract = get_contract(session=db, code=plan.contract)
        run = start_run(
            session=db,
            contract=contract,
            kind=kind,
            flow_run_id=current_flow_run_id(),
            requested_by=requested_by,
            window=plan.window,
            plan=plan.model_dump(mode="json"),
        )
        assert run.id is not None
        return run.id


def _finish(run_id: int, status: RunStatus) -> None:
    engine = engine_for(get_settings().db_url)
    with session_scope(engine) as db:
        finish_run(session=db, run_id=run_id, status=status)


class InspectionOutcome(BaseModel):
    run_id: int
    report_path: str
    hosts: int
    unreachable: list[str]
    email: dict[str, Any] | None = None


def _sweep_report_mail(
    run_id: int, contract: str, targets: list[HostTarget], email: bool
) -> InspectionOutcome:
    status = RunStatus.FAILED
    try:
        sweep: SweepResult = sweep_hosts(run_id, contract, targets)
        status = RunStatus.FAILED if sweep.crashed else RunStatus.COMPLETED
    except BaseException as exc:
        if not isinstance(exc, Exception):  # SIGTERM (TerminationSignal), Ctrl-C: stopped
            status = RunStatus.CANCELLED
        raise
    finally:
        _finish(run_id, status)
    report_path = write_report(run_id)
    mail = email_report(run_id, report_path) if email else None
    return InspectionOutcome(
        run_id=run_id,
        report_path=report_path,
        hosts=len(targets),
        unreachable=sweep.unreachable,
        email=mail,
    )


class AlreadyRunning(Refused):
    """Another inspection of the contract is under way."""


def check_start(params: InspectionParams, me: str | None) -> None:
    """Refused (naming why) when this inspection must not start: unknown or inactive contract,
    no host in scope, a plan nobody could approve, or another inspection of the contract under
    way. The CLI asks before it creates the run (``me`` None); the flow run ``me`` asks again at
    its start and takes the contract's claim."""
    check_alone(params.contract, check_inventory_allows(params), me)


def check_inventory_allows(params: InspectionParams) -> int:
    """The contract's id; Refused when the records say this inspection cannot run."""
    from upkeep.tasks.records import RecordNotFound

    with session_scope(engine_for(get_settings().db_url)) as db:
        try:
            contract = get_contract(session=db, code=params.contract)
        except RecordNotFound as exc:
            raise Refused(str(exc)) from None
        hosts_for_run(session=db, contract=contract, tags=params.tags)
        needs_approval = (
            contract.plan_requires_approval
            if params.require_approval is None
            else params.require_approval
        )
        policy = policy_for(contract.approval_policy, contract.gate_policies, PLAN_GATE)
        why = unapprovable(
            contract.approvers, contract.backup_approver, policy, params.requested_by
        )
        assert contract.id is not None
        contract_id = contract.id
    if needs_approval and why is not None:
        raise Refused(f"the plan of {params.contract} needs approval, but {why}")
    return contract_id


def check_alone(contract: str, contract_id: int, me: str | None) -> None:
    """AlreadyRunning when another inspection of the contract is under way: one plan and one
    gate per contract at a time. The run ``me`` takes the contract's claim; None only asks."""
    engine = engine_for(get_settings().db_url)
    other = (
        claim(engine, "inspection", contract_id, me)
        if me
        else holder_of(engine, "inspection", contract_id)
    )
    if other is not None:
        raise AlreadyRunning(already_running_message("inspection", contract, other))


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
    try:
        check_start(params, current_flow_run_id())
    except AlreadyRunning as exc:
        logger.warning("not started: %s", exc)
        return Cancelled(message=f"not started: {exc}")
    except Refused as exc:
        logger.error("not started: %s", exc)
        return Failed(message=f"not started: {exc}")
    if (ended := blackout_guard(params.contract)) is not None:
        return ended
    plan = build_plan(params)
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
    run_id = _start(plan, "inspection", params.requested_by)
    targets = [HostTarget(id=h.id, name=h.name) for h in plan.hosts]
    outcome = _sweep_report_mail(run_id, plan.contract, targets, params.email_report)
    logger.info("report: %s", outcome.report_path)
    return outcome


class RecheckParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contract: str = Field(description="Contract code, as in the inventory")
    email_report: bool = Field(False, description="E-mail the re-check report")
    requested_by: str | None = Field(None, description="Who started the run")


def recheck_targets(open_findings: list[Finding], host_names: dict[int, str]) -> list[HostTarget]:
    """Per host, the checks with open findings; an unreachable host gets the whole catalogue."""
    by_host: dict[int, set[str]] = {}
    for f in open_findings:
        if f.host_id is not None:  # backup findings are re-checked by the backup flow
            by_host.setdefault(f.host_id, set()).add(f.check)
    targets = []
    for host_id, checks in sorted(by_host.items(), key=lambda kv: host_names[kv[0]]):
        wanted = None if REACHABILITY in checks else sorted(checks)
        targets.append(HostTarget(id=host_id, name=host_names[host_id], checks=wanted))
    return targets


def recheck_run_name() -> str:
    from prefect.runtime import flow_run

    params = flow_run.parameters.get("params") or {}
    if isinstance(params, BaseModel):
        params = params.model_dump()
    return f"re-check · {params.get('contract', '?')} · {date.today().isoformat()}"


@flow(
    name="recheck",
    flow_run_name=recheck_run_name,
    persist_result=True,
)
def recheck_findings(params: RecheckParams) -> InspectionOutcome | State[Any]:
    """Re-run only the checks with open findings and resolve what is fixed."""
    if (ended := blackout_guard(params.contract)) is not None:
        return ended
    from sqlmodel import col, select

    from upkeep.models import Host

    logger = get_run_logger()
    engine = engine_for(get_settings().db_url)
    with session_scope(engine) as db:
        contract = get_contract(session=db, code=params.contract)
        open_findings = list(
            db.exec(
                select(Finding).where(
                    Finding.contract_id == contract.id, Finding.status == FindingStatus.OPEN
                )
            )
        )
        active = {
            h.id: h.name
            for h in db.exec(
                select(Host).where(Host.contract_id == contract.id, col(Host.active).is_(True))
            )
        }
        open_findings = [f for f in open_findings if f.host_id in active]
        targets = recheck_targets(open_findings, {k: v for k, v in active.items() if k})
        run = start_run(
            session=db,
            contract=contract,
            kind="recheck",
            flow_run_id=current_flow_run_id(),
            requested_by=params.requested_by,
            plan={"targets": [t.model_dump() for t in targets]},
        )
        assert run.id is not None
        run_id = run.id
    logger.info("re-checking %d open finding(s) on %d host(s)", len(open_findings), len(targets))
    outcome = _sweep_report_mail(run_id, params.contract, targets, params.email_report)
    with session_scope(engine) as db:
        resolved = db.exec(select(Finding).where(Finding.resolved_by_run_id == run_id)).all()
        still = db.exec(
            select(Finding).where(
                Finding.contract_id == contract.id, Finding.status == FindingStatus.OPEN
            )
        ).all()
        lines = [
            f"## Re-check of {md_escape(params.contract)} (run {run_id})",
            "",
            f"**Resolved:** {len(resolved)} · **still open:** {len(still)}",
            "",
        ]
        lines += [
            f"- resolved: {md_escape(active.get(f.host_id, f.host_id))} {md_escape(f.check)} "
            f"{md_escape(f.subject)}"
            for f in resolved
        ]
        lines += [
            f"- open: {md_escape(active.get(f.host_id, f.host_id))} {md_escape(f.check)} "
            f"{md_escape(f.subject)} ({md_escape(f.severity)})"
            for f in still
        ]
    create_markdown_artifact(markdown="\n".join(lines), description="Re-check difference")
    return outcome
