"""The patch cycle's report (an HTML file and a Markdown artifact) and the mail about it: the
plan for the customer's review, and after a rollout what was done, step by step."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from sqlmodel import col, select

from upkeep.db import open_session
from upkeep.domain.markup import md_escape
from upkeep.domain.naming import artifact_key
from upkeep.domain.patching import PatchPlan
from upkeep.models import InspectionRun, PatchStep
from upkeep.models import PatchPlan as PlanRow
from upkeep.settings import get_settings
from upkeep.tasks.notify import Mail, _one_line, _render_pair, mail_recipients
from upkeep.tasks.patch_survey import load_plan
from upkeep.tasks.render import link_target, safe_name, template_env, write_atomic

__all__ = ["mail_patch_report", "plan_rows", "step_rows", "write_patch_report"]


def plan_rows(plan: PatchPlan) -> list[dict[str, Any]]:
    """One row per update, staging hosts first: what the report, mail and artifact list."""
    return [
        {
            "host": h.host,
            "stage": h.stage,
            "package": i.package,
            "installed": i.installed,
            "target": i.target,
            "advisories": i.advisories,
            "severity": i.severity,
            "restart": i.restart,
            "restart_why": i.restart_why,
        }
        for h in plan.ordered_hosts()
        for i in h.items
    ]


def step_rows(plan_id: int, tz: ZoneInfo) -> list[dict[str, Any]]:
    with open_session() as db:
        steps = db.exec(
            select(PatchStep).where(PatchStep.plan_id == plan_id).order_by(col(PatchStep.id))
        ).all()
        return [
            {
                "when": s.started_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
                "host": s.host,
                "step": s.step,
                "actor": s.actor,
                "ok": s.ok,
                "summary": s.summary,
            }
            for s in steps
        ]


def _title(plan: PatchPlan) -> str:
    return "Patch test report" if plan.kind == "responsive" else "Patch plan"


@task(name="write-patch-report")
def write_patch_report(
    plan_id: int, status: str, changes: dict[str, list[str]] | None = None
) -> str:
    """Render the plan (and whatever was done with it) to a file and an artifact.

    ``status`` is the plan's status on record when the report is written ("proposed",
    "applied", ...): it is part of the task's cache key, so a run replayed after a resume
    reuses the report it already wrote, while the report at the end is written anew instead
    of coming back as the cached proposal."""
    settings = get_settings()
    with open_session() as db:
        row = db.get(PlanRow, plan_id)
        assert row is not None
        run = db.get(InspectionRun, row.run_id)
        assert run is not None
        plan = PatchPlan.model_validate(row.plan)
        status, approved_by, approved_at = row.status, row.approved_by, row.approved_at
        flow_run_id, run_id, started = run.flow_run_id, run.id, run.started_at
    tz = ZoneInfo(plan.timezone)
    rows = plan_rows(plan)
    html = (
        template_env(settings.templates_dir, html=True)
        .get_template("report/patch_plan.html.j2")
        .render(
            plan=plan,
            title=_title(plan),
            digest=plan.digest(),
            status=status,
            approved_by=approved_by,
            approved_at=approved_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
            if approved_at
            else "",
            generated=datetime.now(tz).strftime("%Y-%m-%d %H:%M %Z"),
            rows=rows,
            hosts_with_updates=sum(1 for h in plan.hosts if h.items),
            reboots=[h.host for h in plan.hosts if h.reboot],
            changes=changes or {},
            steps=step_rows(plan_id, tz),
            run_id=run_id,
            plan_id=plan_id,
            flow_run_id=flow_run_id,
        )
    )
    stamp = started.astimezone(tz).strftime("%Y-%m-%d")
    code = safe_name(plan.contract)
    path = (
        settings.reports
        / code
        / stamp[:4]
        / f"patches-{code}-{run_id}-r{plan.revision}-{status}-{stamp}.html"
    )
    write_atomic(path, html)
    create_markdown_artifact(
        markdown=f"## {_title(plan)} · {md_escape(plan.contract)} · revision {plan.revision} "
        f"({md_escape(status)})\n\nPlan hash `{plan.digest()}` · [full report]"
        f"({link_target(path)})",
        key=artifact_key("patch-plan", plan.contract),
        description=f"patch plan of {md_escape(plan.contract)}",
    )
    if rows:
        create_table_artifact(
            table=[
                {k: (", ".join(v) if isinstance(v, list) else v) for k, v in r.items()}
                for r in rows
            ],
            key=artifact_key("patch-updates", plan.contract),
            description=f"updates in patch plan revision {plan.revision}",
        )
    return str(path)


@task(name="mail-patch-report")
def mail_patch_report(
    plan_id: int, report_path: str, outcome: str | None = None, decide: str | None = None
) -> dict[str, Any]:
    """Mail the report to the contract's recipients (queued in the outbox first): the plan
    for review, or (``outcome``) what the rollout did."""
    settings = get_settings()
    _, plan = load_plan(plan_id)
    tz = ZoneInfo(plan.timezone)

    def compose() -> Mail:
        failed = [s for s in step_rows(plan_id, tz) if not s["ok"]]
        if outcome:
            headline = f"Patch rollout {'FAILED' if failed else 'done'}: {plan.contract}"
        elif plan.empty:
            headline = f"Patch advisory {plan.contract}: no update needed"
        else:
            headline = f"{_title(plan)} for your review: {plan.contract}"
        text, html = _render_pair(
            settings.templates_dir,
            "email/patch_plan.txt.j2",
            "email/patch_plan.html.j2",
            {
                "headline": headline,
                "contract_code": plan.contract,
                "revision": plan.revision,
                "digest": plan.digest(),
                "symptom": plan.symptom,
                "tested": (
                    "; ".join(f"{h}: {r}" for h, r in plan.tests.items())
                    or "NOT TESTED (no staging host has the packages)"
                )
                if plan.kind == "responsive"
                else "",
                "rows": plan_rows(plan),
                "outcome": outcome or "",
                "failed_steps": failed,
                "decide": decide or "",
                "report_name": Path(report_path).name,
            },
        )
        return Mail(_one_line(f"[upkeep] {headline}"), text, html, (report_path,))

    return mail_recipients(plan.contract, "patch_report", compose, smtp=settings.smtp)
