"""The service report: a contract's work over the last month, quarter or year.

Period → build the report from the records → save the HTML page → Markdown artifact →
e-mail (opt-in, via the outbox, so a mail server that is down loses nothing and fails
nothing). The next period's plan is what the contract's deployments will run: the cadences
they are built from, after the contract's blackouts and blackout policy, in words.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.states import State
from pydantic import BaseModel, ConfigDict, Field

from upkeep.db import open_session
from upkeep.domain.markup import md_escape
from upkeep.domain.naming import artifact_key
from upkeep.domain.periods import PeriodKind, next_period, period_bounds, period_label
from upkeep.domain.report_time import contract_zone
from upkeep.domain.service_report import PeriodPlan, ServiceReport
from upkeep.flows.blackout import blackout_guard
from upkeep.settings import get_settings
from upkeep.tasks.notify import Mail, mail_recipients
from upkeep.tasks.records import get_contract
from upkeep.tasks.runs import current_flow_run_id, run_name, run_params
from upkeep.tasks.service_plan import plan_period
from upkeep.tasks.service_report import build_service_report
from upkeep.tasks.service_report_render import (
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
    with open_session() as db:
        return get_contract(session=db, code=code).timezone


def service_report_run_name() -> str:
    """``service report · ACME · 2026-11``: the period the parameters name (``?`` when they
    cannot be read: the flow itself reports what is wrong)."""
    raw = run_params()
    try:
        params = ServiceReportParams.model_validate(raw)
        reference = params.reference_date or today_in(_contract_timezone(params.contract))
        label = period_label(params.period, period_bounds(params.period, reference)[0])
    except Exception:
        # A name must never fail the run.
        label = "?"
    return run_name("service report", raw, label)


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
    with open_session() as db:
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


@task(name="publish-service-report")
def publish_artifact(report: ServiceReport, report_path: str) -> None:
    """The report's Markdown summary as the contract's service-report artifact."""
    create_markdown_artifact(
        markdown=render_service_report_markdown(report, Path(report_path)),
        key=artifact_key("service-report", report.contract.code),
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
    if (ended := blackout_guard(params.contract)) is not None:
        return ended
    logger = get_run_logger()
    timezone = _contract_timezone(params.contract)
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
