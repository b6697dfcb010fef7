"""The annual service plan: every planned inspection, test, advisory and report of a year.

Computed from the same cadences and blackouts the deployments are built from, rendered as a
printable HTML page and an iCalendar file the customer can import, and (as a flow on its own
yearly schedule) mailed to the contract's recipients at the start of the year.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.states import State
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from upkeep.db import open_session
from upkeep.domain.annual_plan import plan_for_year, plan_summary
from upkeep.domain.calendar import AnnualPlan, annual_plan_events, ics_calendar
from upkeep.domain.contract import ContractView
from upkeep.domain.markup import md_escape
from upkeep.domain.naming import artifact_key
from upkeep.flows.blackout import blackout_guard
from upkeep.settings import Settings, get_settings
from upkeep.tasks.notify import mail_recipients, render_mail
from upkeep.tasks.records import get_contract, get_customer
from upkeep.tasks.render import link_target, render_annual_plan_html, write_atomic
from upkeep.tasks.runs import run_namer

__all__ = ["annual_plan", "plan_summary", "send_annual_plan", "write_plan_files"]


def annual_plan(*, session: Session, contract_code: str, year: int) -> AnnualPlan:
    """The contract's plan for ``year`` from its cadences, blackouts and blackout policy."""
    contract = get_contract(session=session, code=contract_code, active_only=False)
    view = ContractView.of(contract)
    return plan_for_year(
        customer_name=get_customer(session=session, contract=contract).name,
        contract_code=view.code,
        contract_name=view.name,
        timezone=view.timezone,
        cadences=view.cadences,
        blackouts=list(view.blackouts),
        policy=view.blackout_policy,
        year=year,
    )


def write_plan_files(plan: AnnualPlan, settings: Settings) -> tuple[Path, Path]:
    """Save the plan as HTML and .ics under the report directory; returns both paths."""
    folder = settings.reports / plan.contract_code / str(plan.year)
    stem = f"annual-plan-{plan.contract_code}-{plan.year}"
    html_path, ics_path = folder / f"{stem}.html", folder / f"{stem}.ics"
    write_atomic(html_path, render_annual_plan_html(plan, settings.templates_dir))
    write_atomic(
        ics_path,
        ics_calendar(
            annual_plan_events(plan), calendar_name=f"{plan.contract_code} service plan {plan.year}"
        ),
    )
    return html_path, ics_path


class AnnualPlanParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contract: str = Field(description="Contract code, as in the inventory")
    year: int | None = Field(None, description="Default: this year in the contract's timezone")
    email_report: bool = Field(True, description="Mail the plan to the contract's recipients")
    requested_by: str | None = None


class AnnualPlanOutcome(BaseModel):
    html: str
    ics: str
    year: int
    planned: dict[str, int]
    email: dict[str, Any] | None = None


annual_plan_run_name = run_namer("annual plan", lambda p: str(p.get("year") or "this year"))
"""``annual plan · ACME · 2027`` (``this year`` without a year)."""


@task(name="write-annual-plan")
def write_annual_plan(contract: str, year: int) -> tuple[str, str, dict[str, int]]:
    settings = get_settings()
    with open_session() as db:
        plan = annual_plan(session=db, contract_code=contract, year=year)
    html, ics = write_plan_files(plan, settings)
    return str(html), str(ics), plan_summary(plan)


@task(name="email-annual-plan")
def email_annual_plan(
    contract: str, year: int, html: str, ics: str, planned: dict[str, int]
) -> dict[str, Any]:
    settings = get_settings()
    with open_session() as db:
        c = get_contract(session=db, code=contract)
        context = {
            "customer": get_customer(session=db, contract=c).name,
            "contract": c.code,
            "contract_name": c.name,
            "year": year,
            "planned": planned,
            "timezone": c.timezone,
        }
    subject = f"Service plan {year} · {context['customer']} · {context['contract']}"
    return mail_recipients(
        contract,
        "annual_plan",
        lambda: render_mail(settings.templates_dir, "annual_plan", subject, context, [html, ics]),
        smtp=settings.smtp,
    )


@flow(name="annual-plan", flow_run_name=annual_plan_run_name, persist_result=True)
def send_annual_plan(params: AnnualPlanParams) -> AnnualPlanOutcome | State[Any]:
    """Write the year's plan (HTML and .ics) and mail it to the contract's recipients."""
    if (ended := blackout_guard(params.contract)) is not None:
        return ended
    with open_session() as db:
        tz = get_contract(session=db, code=params.contract).timezone
    year = params.year or datetime.now(ZoneInfo(tz)).year
    html, ics, planned = write_annual_plan(params.contract, year)
    lines = [
        f"## Service plan {year} · {md_escape(params.contract)}",
        "",
        f"[HTML]({link_target(Path(html))}) · [iCalendar]({link_target(Path(ics))})",
        "",
    ]
    lines += [f"- {md_escape(title)}: {n}" for title, n in sorted(planned.items())]
    create_markdown_artifact(
        markdown="\n".join(lines),
        key=artifact_key("annual-plan", params.contract),
        description=f"Service plan {year}",
    )
    mail = (
        email_annual_plan(params.contract, year, html, ics, planned)
        if params.email_report
        else None
    )
    return AnnualPlanOutcome(html=html, ics=ics, year=year, planned=planned, email=mail)
