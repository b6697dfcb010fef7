"""The release checklist (PROCESSES.md, section 4), for a release declared with
``upkeep releases declare`` (which starts this run through the contract's deployment).

Before the window (the *review* part, started when the release is declared):

1. Pre-release checks: the checklist's automatic items (the smoke checks green now, the target
   hosts healthy per the inspection catalogue, a verified backup fresh enough); a failure stops
   here with the reason.
2. The manual items, confirmed by a named person through a typed form (cancel ends it).
3. The customer's review of the test report at the ``release-test-report`` gate (its own
   approvers, e.g. the customer's testers, else the contract's): the report is mailed to them
   and shown (Markdown) at the gate; a rejection with a comment goes back to the engineer at
   ``release-test-report-revision`` (a new report file, kept like the first, or cancel) and
   the new report is reviewed again. Every decision names the report's hash.
4. Release approval: the ``release`` gate's approvers (M of N, no self-approval unless the
   contract allows it), with the test report, the changes, the checks' results and the
   confirmations as evidence.

The customer's notice was queued in the outbox when the release was declared, due
``notice_hours`` before the window. With the window more than ``EARLY_START`` away the review
run ends *approved* and Prefect's server holds the *window* run, scheduled ``WINDOW_LEAD``
before the window (it survives restarts); with the window near, this run goes on:

5. At the window: the automatic checks again, the release command on the canary hosts, the
   smoke checks, a soak watching them, then the other hosts, and the verification straight
   after. One release at a time per contract.
6. On a failure: every released host rolled back at once against the clock (from the moment
   the failure was detected to the rollback complete and verified, the contract's limit, 1 hour
   by default); a late or unverified rollback is a critical finding.
7. The mail after the release: what, when, every step and the result.
8. The effect report ``effect_report_days`` (3) later: a run of the contract's
   ``release-effect`` deployment that Prefect's server holds (``upkeep.flows.release_effect``).

Every step is a ``releasestep`` row: who, when, what, the evidence.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task
from prefect.input import RunInput
from prefect.states import Cancelled, Failed, State
from pydantic import BaseModel, ConfigDict, Field

from upkeep.domain.approval_form import describe_refusals
from upkeep.domain.approvals import ApprovalRequest, ApprovalResult, Decision, GateClosed, Person
from upkeep.domain.contract import ContractView
from upkeep.domain.markup import md_escape
from upkeep.domain.releases import (
    CHECKLIST_GATE,
    RELEASE_GATE,
    TEST_REPORT_GATE,
    TEST_REPORT_REVISION_GATE,
    Declared,
    ReleaseError,
    in_inbox,
    local_time,
    missing_confirmations,
    release_markdown,
    report_problems,
    test_report_markdown,
)
from upkeep.flows.approvals import request_approval, request_revision
from upkeep.flows.starting import start_or_refuse
from upkeep.models import utcnow
from upkeep.settings import get_settings
from upkeep.tasks.approval_records import close_gates_on_end
from upkeep.tasks.guards import Refused
from upkeep.tasks.release_effect import schedule_effect_report
from upkeep.tasks.release_run import (
    RECOVER,
    REVIEW,
    WINDOW,
    WINDOW_LEAD,
    check_startable,
    claim_window,
    finish_release,
    interrupted,
    load_release,
    log_step,
    mail_release_result,
    pre_checks,
    record_baseline,
    release_report,
    roll_back,
    run_command,
    schedule_window,
    set_running,
    smoke,
    soak,
    start_release_run,
)
from upkeep.tasks.releases import declare as declare_task
from upkeep.tasks.releases import (
    mail_test_report,
    release_run_at,
    replace_test_report,
    report_text,
    revision_kept,
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


class TestReportRevision(RunInput):
    """The engineer's answer to a rejected test report: a new report, or cancel the release."""

    action: Literal["resubmit", "cancel"] = Field(
        description="resubmit a new test report for review, or cancel the release"
    )
    engineer: str = Field(min_length=1, max_length=200, description="Your name")
    test_report: str = Field(
        "",
        max_length=4000,
        description="The new report's path on the machine running upkeep (HTML, PDF or Markdown)",
    )
    note: str = Field("", max_length=2000, description="What changed in the report")


def _check_start(release_id: int) -> str:
    """The part of the release this run does (``check_startable``); the window part starts at
    most EARLY_START before the window."""
    phase = check_startable(release_id, current_flow_run_id())
    row = load_release(release_id)[0]
    if phase == WINDOW and utcnow() < row.window_at - EARLY_START:
        raise Refused(
            f"release {release_id}'s window opens at {row.window_at.isoformat()}: the release "
            f"itself starts at most {EARLY_START} before it"
        )
    return phase


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
def record_decision(release_id: int, result: ApprovalResult, step: str = "decision") -> None:
    log_step(
        release_id,
        step,
        result.decision is Decision.APPROVE,
        f"{result.decision.value} by {result.approver}"
        + (f": {result.comment}" if result.comment else ""),
        actor=result.approver,
        detail={"approval_id": result.approval_id, "decision": result.decision.value},
    )


@task(name="record-report-revision")
def record_report_revision(release_id: int, engineer: str, sha256: str, note: str) -> None:
    log_step(
        release_id,
        "report-revised",
        True,
        f"new test report (sha256 {sha256[:12]})" + (f": {note}" if note else ""),
        actor=engineer,
        detail={"sha256": sha256, "note": note},
    )


def _request(
    view: ContractView, gate: str, key: str, subject: str, evidence: str, requested_by: str | None
) -> ApprovalRequest:
    """A release gate's request: the gate's own approvers (else the contract's), its policy."""
    return ApprovalRequest(
        gate=gate,
        key=key,
        contract=view.code,
        contract_id=view.id,
        subject=subject,
        evidence=evidence,
        approvers=[Person(**p.model_dump()) for p in view.approvers_for(gate)],
        backup_approver=Person(**view.backup_approver.model_dump())
        if view.backup_approver
        else None,
        requested_by=requested_by,
        policy=view.policy(gate),
        timezone=view.timezone,
    )


def _revise_report(release_id: int, view: ContractView, rejection: str, round_no: int) -> bool:
    """The engineer's new test report after a rejection (kept, recorded): True; cancelled:
    False."""

    def describe(problems: list[str]) -> str:
        refused = describe_refusals(problems, heading="Your earlier answer was refused")
        return "\n".join(
            [
                f"**The customer rejected the test report:** {md_escape(rejection)}",
                "",
                *([refused, ""] if refused else []),
                "Put the revised report (HTML, PDF or Markdown) in upkeep's report inbox, give "
                "its name and resubmit; or cancel the release.",
            ]
        )

    def check(answer: TestReportRevision) -> TestReportRevision:
        if answer.action == "resubmit" and not answer.test_report.strip():
            raise ValueError("resubmit needs the new test report's path")
        if not revision_kept(release_id, round_no):  # a replay finds it kept already
            try:
                problems = report_problems(in_inbox(answer.test_report, get_settings().inbox))
            except ReleaseError as exc:
                problems = [str(exc)]
            if problems:
                raise ValueError("; ".join(problems))
        return answer

    answer = request_revision(
        form=TestReportRevision,
        gate=TEST_REPORT_REVISION_GATE,
        key=f"{TEST_REPORT_REVISION_GATE}-{release_id}-r{round_no}",
        contract_id=view.id,
        subject=f"revise the test report of release {release_id}",
        describe=describe,
        revise=check,
        how_to_answer="the Prefect UI's form of run RUN",
    )
    if answer is None:
        return False
    sha = replace_test_report(release_id, answer.test_report, answer.engineer, round_no)
    record_report_revision(release_id, answer.engineer, sha, answer.note)
    return True


def _review_test_report(release_id: int, view: ContractView, requested_by: str | None) -> bool:
    """The customer's review of the test report, round after round: approved (True), or the
    engineer cancelled after a rejection (False). Each round's report is mailed to the
    reviewers and shown (Markdown) at the gate; every decision is recorded with its hash."""
    round_no = 0
    while True:
        round_no += 1
        row = load_release(release_id)[0]
        mail_test_report(release_id, row.test_report_sha256, round_no)
        result = request_approval(
            _request(
                view,
                TEST_REPORT_GATE,
                f"{TEST_REPORT_GATE}-{release_id}-r{round_no}",
                f"test report of {row.system} {row.version} ({view.code})",
                test_report_markdown(
                    contract=view.code,
                    system=row.system,
                    version=row.version,
                    changes=row.changes,
                    window=local_time(row.window_at, view.timezone),
                    report_name=row.test_report_name,
                    report_sha256=row.test_report_sha256,
                    report_text=report_text(row),
                    round_no=round_no,
                ),
                requested_by,
            )
        )
        record_decision(release_id, result, f"report-review:{row.test_report_sha256[:12]}")
        if result.decision is Decision.APPROVE:
            return True
        rejection = f"{result.approver}: {result.comment}"
        if not _revise_report(release_id, view, rejection, round_no):
            return False


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
        time.sleep(left)  # at most EARLY_START: the window part may not start earlier


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


def _ended(
    release_id: int, run_id: int, status: str, message: str, cancelled: bool = False
) -> State[Any]:
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
    """Before the window: checks, confirmations, the customer's test-report review, the
    release approval; with the window still far, Prefect's server starts the rest as a run of
    its own. At the window: checks again, canary, soak, the rest, verification, rollback,
    mail."""
    phase = start_or_refuse(lambda: _check_start(params.release_id))
    if isinstance(phase, State):
        return phase
    rid = params.release_id
    touched: list[str] = []
    last: datetime | None = None
    if phase == REVIEW:
        reviewed = _review(params)
        if isinstance(reviewed, State | ReleaseOutcome):
            return reviewed
        run_id = reviewed
    else:
        run_id = start_release_run(rid, params.requested_by, "running")
        touched, last = interrupted(rid) if phase == RECOVER else ([], None)
        if not touched:  # at the window (or interrupted before any host was touched)
            checks = pre_checks(rid, run_id, WINDOW)
            failed = [f"{name}: {summary}" for name, ok, summary in checks if not ok]
            if failed:
                return _ended(
                    rid,
                    run_id,
                    "checks-failed",
                    "checks at the window failed: " + "; ".join(failed),
                )
    claimed = start_or_refuse(lambda: claim_window(rid, current_flow_run_id()))
    if isinstance(claimed, State):
        return claimed  # the release stays approved: run it again once the other one ended
    if touched:
        status, outcome = _recover(rid, run_id, touched, last)
    else:
        _wait_for_window(rid)
        spec = load_release(rid)[3]
        soak = spec.soak_minutes * 60 if params.soak_seconds is None else params.soak_seconds
        status, outcome = _execute(rid, run_id, soak)
    if status == "released":
        record_baseline(rid)  # before it ends: the next release compares with this
    finish_release(rid, run_id, status)
    report = release_report(rid, status, outcome)
    if params.email:
        mail_release_result(rid, report)
    schedule_effect_report(rid)  # the +N-day effect report, a run Prefect's server holds
    result_model = ReleaseOutcome(release_id=rid, run_id=run_id, status=status, outcome=outcome)
    if status != "released":
        return Failed(message=f"release {status}: {outcome}", data=result_model)
    return result_model


def _recover(
    release_id: int, run_id: int, touched: list[str], last: datetime | None
) -> tuple[str, str]:
    """A release run interrupted while releasing (the process or the machine died): every
    host whose release command was started is rolled back, against the clock from the last
    step recorded (the failure happened at most then); (status, what happened)."""
    detected = last or utcnow()
    why = (
        f"the release run was interrupted after starting the release on {', '.join(touched)} "
        f"(last step recorded {detected:%Y-%m-%d %H:%M:%S} UTC)"
    )
    log_step(release_id, "failure", False, why, started=detected)
    clock = roll_back(release_id, run_id, touched, detected)
    status = "rolled-back" if clock.verified else "rollback-failed"
    return status, f"{why}; {clock.text()}"


def _review(params: ReleaseParams) -> int | ReleaseOutcome | State[Any]:
    """Checks, confirmations, the test report's review and the release approval. The run's
    record id to go on with the release now (the window is near), the outcome when Prefect
    will start the window part by itself (or the operator must), or the state that ended it."""
    logger = get_run_logger()
    rid = params.release_id
    row, view, _, spec = load_release(rid)
    subject = f"release {row.system} {row.version} ({view.code})"
    run_id = start_release_run(rid, params.requested_by, "reviewing")

    checks = pre_checks(rid, run_id, "review")
    failed = [f"{name}: {summary}" for name, ok, summary in checks if not ok]
    if failed:
        logger.error("pre-release checks failed: %s", "; ".join(failed))
        return _ended(
            rid, run_id, "checks-failed", "pre-release checks failed: " + "; ".join(failed)
        )

    manual = [i.name for i in spec.checklist if i.kind == "manual"]
    try:
        confirmed_by = _confirm(rid, manual, view.id, subject) if manual else ""
        if confirmed_by is None:
            return _ended(rid, run_id, "cancelled", "cancelled at the checklist", cancelled=True)
        if not _review_test_report(rid, view, params.requested_by):
            return _ended(
                rid, run_id, "cancelled", "cancelled after the test report's rejection", True
            )
        row = load_release(rid)[0]  # the reviewed report may be a revision
        result = request_approval(
            _request(
                view,
                RELEASE_GATE,
                f"{RELEASE_GATE}-{rid}",
                subject,
                release_markdown(
                    contract=view.code,
                    system=row.system,
                    version=row.version,
                    changes=row.changes,
                    window=local_time(row.window_at, view.timezone),
                    hosts=row.hosts,
                    canary=row.canary_hosts,
                    report_name=row.test_report_name,
                    report_sha256=row.test_report_sha256,
                    checks=checks,
                    confirmed=[(m, f"confirmed by {confirmed_by}") for m in manual],
                ),
                params.requested_by,
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
    if row.window_at - utcnow() <= EARLY_START:
        set_running(rid)
        return run_id
    scheduled = schedule_window(rid, run_id, params.requested_by)
    when = (row.window_at - WINDOW_LEAD).astimezone(ZoneInfo(view.timezone))
    outcome = (
        f"approved; Prefect starts the release (run {scheduled}) at {when:%Y-%m-%d %H:%M %Z}"
        if scheduled
        else f"approved; nothing serves release/{view.code.lower()}: run `upkeep releases run "
        f"{rid}` within the hour before the window ({when:%Y-%m-%d %H:%M %Z})"
    )
    return ReleaseOutcome(release_id=rid, run_id=run_id, status="approved", outcome=outcome)


class DeclareParams(BaseModel):
    """A release as the engineer declares it in the Prefect UI (the ``release-declare``
    deployment's form); the same checks as ``upkeep releases declare``."""

    model_config = ConfigDict(extra="forbid")

    contract: str = Field(description="Contract code (set by the deployment)")
    system: str = Field(min_length=1, description="The system released (as in the inventory)")
    version: str = Field(min_length=1, description="The version released")
    changes: str = Field(min_length=1, description="The change list")
    window: str = Field(description="YYYY-MM-DD HH:MM in the contract's timezone")
    test_report: str = Field(
        min_length=1,
        description="The test report's name in upkeep's report inbox (UPKEEP_REPORT_INBOX: "
        "HTML, PDF or Markdown); upkeep keeps a copy",
    )
    declared_by: str = Field(min_length=1, max_length=200, description="Your name")
    canary: list[str] = Field(
        default_factory=list, description="Canary hosts (default: the system's canary share)"
    )
    impact: str = Field("", description="What the customer may notice during the window")
    start: bool = Field(True, description="Start the release's review run now")


class Declaration(BaseModel):
    release_id: int
    notice_due: str | None
    review_run: str | None
    """The release run started on the contract's deployment (None: not started)."""


@flow(
    name="release-declare",
    flow_run_name=run_namer("release declare", lambda p: str(p.get("version"))),
    persist_result=True,
)
def declare(params: DeclareParams) -> Declaration | State[Any]:
    """Declare a release from the UI's form and start its run (checks, the checklist, the
    customer's test-report review, the approval; then Prefect starts the release before the
    window). A declaration with problems fails naming each; nothing is stored then."""
    logger = get_run_logger()
    try:
        report = in_inbox(params.test_report, get_settings().inbox)
        rid, due = declare_task(
            Declared(
                contract=params.contract,
                system=params.system,
                version=params.version,
                changes=params.changes,
                window=params.window,
                test_report=report,
                canary=tuple(params.canary),
                impact=params.impact,
            ),
            params.declared_by,
        )
    except (ReleaseError, LookupError) as exc:
        logger.error("release not declared: %s", exc)
        return Failed(message=f"release not declared: {exc}")
    run = release_run_at(rid, params.contract, params.declared_by) if params.start else None
    if params.start and run is None:
        logger.warning(
            "release %s declared but not started: nothing serves release/%s; start it with "
            "upkeep releases run %s",
            rid,
            params.contract.lower(),
            rid,
        )
    return Declaration(release_id=rid, notice_due=due, review_run=run)
