"""The backup run's report (an HTML file and a Markdown artifact) and the mail about it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prefect import task
from prefect.artifacts import create_markdown_artifact
from sqlmodel import Session, col, select

from upkeep.db import open_session
from upkeep.domain.backups import SourceOutcome, report_source
from upkeep.domain.contract import ContractView
from upkeep.domain.markup import md_escape
from upkeep.domain.naming import artifact_key
from upkeep.models import BackupVersion, Contract, InspectionRun, Outcome
from upkeep.settings import get_settings
from upkeep.tasks.notify import Mail, mail_recipients, render_backup_email
from upkeep.tasks.records import get_customer
from upkeep.tasks.render import link_target, safe_name, template_env, write_atomic


def _run_and_contract(db: Session, run_id: int) -> tuple[InspectionRun, Contract]:
    run = db.get(InspectionRun, run_id)
    assert run is not None
    contract = db.get(Contract, run.contract_id)
    assert contract is not None
    return run, contract


def _archive(db: Session, contract_id: int, system: str) -> list[BackupVersion]:
    """The system's kept versions (not pruned, no drills), newest verification first."""
    return list(
        db.exec(
            select(BackupVersion)
            .where(
                BackupVersion.contract_id == contract_id,
                BackupVersion.system == system,
                BackupVersion.drill == False,  # noqa: E712
                col(BackupVersion.pruned_at).is_(None),
            )
            .order_by(col(BackupVersion.verified_at).desc())
        ).all()
    )


def _summary(code: str, drill: bool, path: Path, outcomes: Sequence[SourceOutcome]) -> str:
    """The Markdown artifact: one row per source and a link to the full report."""
    lines = [
        f"## {'Disaster-recovery drill' if drill else 'Backup verification'} · {md_escape(code)}",
        "",
        f"[Full report]({link_target(path)})",
        "",
        "| system | kind | outcome | fault | detail |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {md_escape(o.system)} | {md_escape(o.kind)} | {md_escape(o.outcome)} | "
        f"{md_escape(o.fault or '')} | {md_escape(o.reason or '')} |"
        for o in outcomes
    ]
    return "\n".join(lines)


@task(name="write-backup-report")
def write_backup_report(run_id: int, outcomes: list[SourceOutcome], drill: bool) -> str:
    """Render the run's report to a file and a Markdown artifact; returns the path."""
    settings = get_settings()
    with open_session() as db:
        run, row = _run_and_contract(db, run_id)
        contract = ContractView.of(row)
        customer = get_customer(session=db, contract=row)
        tz = ZoneInfo(contract.timezone)
        specs = {s.system: s for s in contract.backup_sources}
        sources = [
            report_source(
                o,
                specs.get(o.system),
                db.get(BackupVersion, o.version_id) if o.version_id else None,
                _archive(db, contract.id, o.system),
                run.started_at,
                tz,
            )
            for o in outcomes
        ]
        html = (
            template_env(settings.templates_dir, html=True)
            .get_template("report/backups.html.j2")
            .render(
                customer=customer.name,
                contract=contract.code,
                contract_name=contract.name,
                timezone=contract.timezone,
                drill=drill,
                generated=datetime.now(tz).strftime("%Y-%m-%d %H:%M %Z"),
                sources=sources,
                good=sum(1 for o in outcomes if o.outcome == Outcome.GOOD),
                bad=sum(1 for o in outcomes if o.outcome != Outcome.GOOD),
                run_id=run_id,
                flow_run_id=run.flow_run_id,
            )
        )
        stamp = run.started_at.astimezone(tz).strftime("%Y-%m-%d")
        kind = "drill" if drill else "backups"
        code = safe_name(contract.code)
        path = settings.reports / code / stamp[:4] / f"{kind}-{code}-{run_id}-{stamp}.html"
        write_atomic(path, html)
        run.report_path = str(path)
        db.add(run)
    create_markdown_artifact(
        markdown=_summary(contract.code, drill, path, outcomes),
        key=artifact_key(kind, contract.code),
        description=f"{kind} of {md_escape(contract.code)}",
    )
    return str(path)


@task(name="tell-recipients")
def tell_recipients(
    run_id: int, report_path: str, outcomes: list[SourceOutcome], drill: bool
) -> dict[str, Any]:
    """Mail the report to the contract's recipients (queued in the outbox first)."""
    settings = get_settings()
    with open_session() as db:
        code = _run_and_contract(db, run_id)[1].code

    def compose() -> Mail:
        subject, text, html = render_backup_email(
            templates_dir=settings.templates_dir,
            contract_code=code,
            run_id=run_id,
            outcomes=outcomes,
            drill=drill,
            report_name=Path(report_path).name,
        )
        return Mail(subject, text, html, (report_path,))

    return mail_recipients(code, "backup_report", compose, smtp=settings.smtp)
