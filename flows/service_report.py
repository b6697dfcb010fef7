"""The service report: a contract's work over the last month, quarter or year.

Period → build the report from the records → save the HTML page → Markdown artifact →
e-mail (opt-in, via the outbox, so a mail server that is down loses nothing and fails
nothing). The next period's plan is what the contract's deployments will run: the cadences
they are built from, after the contract's blackouts and blackout policy, in words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.states import State
from pydantic import BaseModel, ConfigDict, Field

from upkeep.db import engine_for, session_scope
from upkeep.domain.cadence import (
    Blackout,
    Cadence,
    CadenceError,
    describe,
    dst_shift,
    parse_blackouts,
    parse_cadence,
    planned_runs,
)
from upkeep.domain.cadence import PlannedRun as CadenceSlot
from upkeep.domain.markup import md_escape
from upkeep.domain.processes import specs_for, unsupported
from upkeep.settings import get_settings
from upkeep.tasks.notify import Mail, mail_recipients
from upkeep.tasks.records import get_contract
from upkeep.tasks.reports import contract_zone
from upkeep.tasks.runs import current_flow_run_id
from upkeep.tasks.service_report import (
    PeriodKind,
    PeriodPlan,
    PlannedRun,
    ServiceReport,
    build_service_report,
    local_midnight,
    next_period,
    period_bounds,
    period_label,
    process_name,
    render_service_report_email,
    render_service_report_html,
    render_service_report_markdown,
    save_service_report,
)


class ServiceReportParams(BaseModel):
    """Which contract and period to report on. Sending mail is opt-in."""

    model_config = ConfigDict(extra="forbid")

    contract: str = Field(description="Contract code, as in the inventory")
    period: Literal["month", "quarter", "year"] = Field(
        "month", description="Report on the last complete month, quarter or year"
    )
    reference_date: date | None = Field(
        None,
        description="Report on the period before this date (default: today in the contract's "
        "timezone)",
    )
    email_report: bool = Field(False, description="E-mail the report to the contract's recipients")
    requested_by: str | None = Field(None, description="Who started the run")


class ServiceReportOutcome(BaseModel):
    report_path: str
    label: str
    period_start: date
    period_end: date
    """Exclusive."""
    runs: int
    failed_runs: int
    """Runs that did not complete cleanly: with failures, failed, cancelled, unfinished."""
    missed_runs: int = 0
    """Runs the cadences planned in the period with no run recorded."""
    backups_verified: int = 0
    backups_failed: int = 0
    findings_opened: int
    findings_resolved: int
    open_at_end: int
    gates: int
    planned: int
    email: dict[str, Any] | None = None


def today_in(timezone: str) -> date:
    """Today's date in ``timezone`` (UTC when the name is unknown)."""
    return datetime.now(UTC).astimezone(contract_zone(timezone)).date()


def _contract_timezone(code: str) -> str:
    engine = engine_for(get_settings().db_url)
    with session_scope(engine) as db:
        return get_contract(session=db, code=code).timezone


def service_report_run_name() -> str:
    """``service report · ACME · 2026-11``."""
    from prefect.runtime import flow_run

    raw = flow_run.parameters.get("params") or {}
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    contract = str(raw.get("contract", "?"))
    try:
        params = ServiceReportParams.model_validate(raw)
        reference = params.reference_date or today_in(_contract_timezone(params.contract))
        label = period_label(params.period, period_bounds(params.period, reference)[0])
    except Exception:
        # A name must never fail the run; the flow itself reports what is wrong.
        label = "?"
    return f"service report · {contract} · {label}"


# --- the next period's plan -------------------------------------------------------------------

POLICY_WORDS = {
    "next_allowed_day": "A run that falls on a blackout day moves to the next allowed day, at the "
    "same time.",
    "skip": "A run that falls on a blackout day is skipped.",
}


def _blackout_words(blackout: Blackout) -> str:
    days = (
        f"{blackout.start.isoformat()}"
        if blackout.start == blackout.end
        else f"{blackout.start.isoformat()} – {blackout.end.isoformat()}"
    )
    return f"{days}: {blackout.reason}" if blackout.reason else days


def _slot_notes(cadence: Cadence, slot: CadenceSlot, zone: tzinfo) -> tuple[str, ...]:
    notes = []
    why = f" ({slot.reason})" if slot.reason else ""
    if slot.skipped:
        notes.append(f"skipped: blackout day{why}")
    elif slot.moved:
        original = slot.original.astimezone(zone)
        notes.append(f"moved from {original:%Y-%m-%d %H:%M}: blackout day{why}")
    at = slot.at.astimezone(zone)
    wall = dst_shift(cadence, at)
    if wall is not None and not slot.skipped:
        notes.append(
            f"at {at:%H:%M} instead of {wall:%H:%M}: {wall:%H:%M} does not exist on "
            f"{at:%Y-%m-%d}, when the clocks go forward"
        )
    return tuple(notes)


def plan_for_period(
    *,
    cadences: Mapping[str, Any],
    timezone: str,
    start: datetime,
    end: datetime,
    blackouts: object = None,
    policy: str = "next_allowed_day",
    not_scheduled: Sequence[str] = (),
) -> PeriodPlan:
    """What ``cadences`` (process key -> cadence as written) plan for ``[start, end)``.

    Pure. Blackouts apply with ``policy`` (moved runs and skipped ones say so, and why); a
    run that daylight saving moved says so; cadences are in words, processes by name. A
    cadence that cannot be read, and the processes in ``not_scheduled``, are named in the
    note, never with the raw expression.
    """
    problems: list[str] = []
    try:
        parsed = parse_blackouts(blackouts)
    except CadenceError:
        problems.append("the blackout days in the inventory cannot be read")
        parsed = []
    zone = contract_zone(timezone)
    runs: list[PlannedRun] = []
    for key, written in sorted(cadences.items()):
        try:
            cadence = parse_cadence(written)
        except CadenceError:
            problems.append(f"{process_name(key)}: its cadence cannot be read")
            continue
        try:
            slots = planned_runs(cadence, timezone, parsed, policy, start, end)
            words = describe(cadence, timezone, start)
        except ValueError:
            # An unknown timezone or policy, or a cron date that never comes (30 February).
            problems.append(f"{process_name(key)}: no run time can be computed from its cadence")
            continue
        runs += [
            PlannedRun(
                at=slot.at.astimezone(zone),
                process=process_name(key),
                cadence=words,
                notes=_slot_notes(cadence, slot, zone),
                skipped=slot.skipped,
                key=key,
            )
            for slot in slots
        ]
    problems += [f"{process_name(key)}: not scheduled by upkeep yet" for key in not_scheduled]
    first, last = start.astimezone(zone).date(), (end - timedelta(seconds=1)).astimezone(zone)
    in_period = [b for b in parsed if b.end >= first and b.start <= last.date()]
    return PeriodPlan(
        runs=tuple(sorted(runs, key=lambda r: (r.at, r.process))),
        blackouts=tuple(_blackout_words(b) for b in in_period),
        policy=POLICY_WORDS.get(policy) if in_period else None,
        note="Not planned: " + "; ".join(problems) + "." if problems else None,
    )


@task(name="plan-period")
def plan_period(contract: str, start: date, stop: date) -> PeriodPlan:
    """What the contract's deployments run in ``[start, stop)`` (local dates): the cadences
    they are built from (``deployments.specs_for``), after blackouts."""
    engine = engine_for(get_settings().db_url)
    with session_scope(engine) as db:
        row = get_contract(session=db, code=contract)
        cadences = {s.process: s.cadence for s in specs_for(row) if s.cadence is not None}
        timezone, blackouts, policy = row.timezone, list(row.blackouts), row.blackout_policy
        not_scheduled = unsupported(row)
    zone = contract_zone(timezone)
    plan = plan_for_period(
        cadences=cadences,
        timezone=timezone,
        start=local_midnight(start, zone),
        end=local_midnight(stop, zone),
        blackouts=blackouts,
        policy=policy,
        not_scheduled=not_scheduled,
    )
    if plan.note:
        get_run_logger().warning("plan for %s – %s incomplete: %s", start, stop, plan.note)
    return plan


# --- report, artifact, e-mail ------------------------------------------------------------------


@task(name="build-service-report")
def build_report(
    contract: str,
    kind: PeriodKind,
    start: date,
    end: date,
    plan: PeriodPlan,
    due: PeriodPlan,
    flow_run_id: str | None = None,
) -> ServiceReport:
    """Read the period's records into a :class:`ServiceReport`."""
    engine = engine_for(get_settings().db_url)
    with session_scope(engine) as db:
        return build_service_report(
            session=db,
            contract_code=contract,
            kind=kind,
            start=start,
            end=end,
            plan=plan,
            due=due.runs,
            flow_run_id=flow_run_id,
        )


@task(name="write-service-report")
def write_report(report: ServiceReport) -> str:
    """Render the HTML page and save it under the report directory; returns the file path."""
    settings = get_settings()
    html = render_service_report_html(
        report, settings.templates_dir, prefect_ui_url=settings.prefect_ui_url
    )
    path = save_service_report(
        html, report_dir=settings.reports, contract_code=report.contract.code, label=report.label
    )
    return str(path)


def artifact_key(contract: str) -> str:
    """``service-report-acme``: artifact keys allow lowercase letters, digits and dashes."""
    return "service-report-" + "".join(c if c.isalnum() else "-" for c in contract.lower())


@task(name="publish-service-report")
def publish_artifact(report: ServiceReport, report_path: str) -> None:
    """The report's Markdown summary as the contract's service-report artifact."""
    from pathlib import Path

    create_markdown_artifact(
        markdown=render_service_report_markdown(report, Path(report_path)),
        key=artifact_key(report.contract.code),
        description=md_escape(f"Service report {report.contract.code} {report.label}"),
    )


@task(name="email-service-report")
def email_report(report: ServiceReport, report_path: str) -> dict[str, Any]:
    """Queue the report for the contract's recipients, then deliver everything pending.

    A delivery failure stays in the outbox for the next run and is logged, never raised.
    """
    settings = get_settings()

    def compose() -> Mail:
        subject, text, html = render_service_report_email(
            report, report_path, settings.templates_dir
        )
        return Mail(subject, text, html, (report_path,))

    return mail_recipients(report.contract.code, "service_report", compose, smtp=settings.smtp)


# --- the flow ---------------------------------------------------------------------------------


@flow(name="service-report", flow_run_name=service_report_run_name, persist_result=True)
def service_report(params: ServiceReportParams) -> ServiceReportOutcome | State[Any]:
    """Report on the contract's last complete period: work done and not done, faults, backups,
    approvals and the plan for the next period; e-mail it when asked."""
    from upkeep.flows.blackout import blackout_guard

    if (ended := blackout_guard(params.contract)) is not None:
        return ended
    logger = get_run_logger()
    engine = engine_for(get_settings().db_url)
    with session_scope(engine) as db:
        timezone = get_contract(session=db, code=params.contract).timezone
    start, end = period_bounds(params.period, params.reference_date or today_in(timezone))
    logger.info(
        "service report %s %s [%s, %s), requested by %s",
        params.contract,
        period_label(params.period, start),
        start,
        end,
        params.requested_by or "nobody named",
    )
    plan = plan_period(params.contract, *next_period(params.period, end))
    due = plan_period(params.contract, start, end)
    report = build_report(
        params.contract, params.period, start, end, plan, due, current_flow_run_id()
    )
    path = write_report(report)
    publish_artifact(report, path)
    mail = email_report(report, path) if params.email_report else None
    logger.info("service report: %s", path)
    return ServiceReportOutcome(
        report_path=path,
        label=report.label,
        period_start=start,
        period_end=end,
        runs=report.runs_total,
        failed_runs=report.runs_failed,
        missed_runs=len(report.missed),
        backups_verified=len(report.backups),
        backups_failed=len(report.backups_failed),
        findings_opened=len(report.opened),
        findings_resolved=len(report.resolved),
        open_at_end=len(report.open_at_end),
        gates=report.approvals.gates,
        planned=len(report.planned),
        email=mail,
    )
