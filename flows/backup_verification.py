"""Backup-restore verification and the disaster-recovery drill.

Per source (its own task; one bad source never stops the others): is the latest backup still
valid (else take a new full one), restore it somewhere harmless, check the data is complete
and usable, say whose fault a failure is, keep the verified version in the archive and prune
old ones without ever losing the last good one. Then a report (file and UI artifact), and mail
to the contract's recipients when a backup failed (or when asked).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import State
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from upkeep.db import engine_for, open_session, session_scope
from upkeep.domain.markup import md_escape
from upkeep.flows.blackout import blackout_guard
from upkeep.models import BackupVersion, Contract, InspectionRun, RunStatus
from upkeep.settings import get_settings
from upkeep.tasks.backup_verify import contract_sources, verify_source
from upkeep.tasks.notify import Mail, mail_recipients, render_backup_email
from upkeep.tasks.records import finish_run, get_contract, get_customer, start_run
from upkeep.tasks.reports import link_target, safe_name, template_env, write_atomic
from upkeep.tasks.runs import current_flow_run_id


class BackupParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contract: str = Field(description="Contract code, as in the inventory")
    source: str | None = Field(None, description="Only this backup source (system name)")
    drill: bool = Field(False, description="Disaster-recovery drill: full restore, timed")
    email_report: bool = Field(False, description="Mail the report even when all is well")
    requested_by: str | None = None


class BackupOutcome(BaseModel):
    run_id: int
    report_path: str
    sources: list[dict[str, Any]]

    @property
    def failed(self) -> list[str]:
        return [s["system"] for s in self.sources if s["outcome"] != "good"]


def backup_run_name() -> str:
    params = flow_run.parameters.get("params") or {}
    if isinstance(params, BaseModel):
        params = params.model_dump()
    what = "drill" if params.get("drill") else "backup test"
    return f"{what} · {params.get('contract', '?')}" + (
        f" · {params['source']}" if params.get("source") else ""
    )


def _human_size(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GiB"


def _run_and_contract(db: Session, run_id: int) -> tuple[InspectionRun, Contract]:
    run = db.get(InspectionRun, run_id)
    assert run is not None
    contract = db.get(Contract, run.contract_id)
    assert contract is not None
    return run, contract


@task(name="write-backup-report")
def write_backup_report(run_id: int, outcomes: list[dict[str, Any]], drill: bool) -> str:
    """Render the run's report to a file and a Markdown artifact; returns the path."""
    settings = get_settings()
    with session_scope(engine_for(settings.db_url)) as db:
        run, contract = _run_and_contract(db, run_id)
        customer = get_customer(session=db, contract=contract)
        tz = ZoneInfo(contract.timezone)
        by_system = {s["system"]: s for s in contract.backup_sources}
        sources = []
        for o in outcomes:
            spec = by_system.get(o["system"], {})
            version = db.get(BackupVersion, o["version_id"]) if o.get("version_id") else None
            archive = db.exec(
                select(BackupVersion)
                .where(
                    BackupVersion.contract_id == contract.id,
                    BackupVersion.system == o["system"],
                    BackupVersion.drill == False,  # noqa: E712
                    col(BackupVersion.pruned_at).is_(None),
                )
                .order_by(col(BackupVersion.verified_at).desc())
            ).all()
            age = None
            if version is not None and version.taken_at is not None:
                hours = (run.started_at - version.taken_at).total_seconds() / 3600
                age = f"{hours:.1f} h"
            sources.append(
                {
                    "system": o["system"],
                    "kind": o["kind"],
                    "outcome": o["outcome"],
                    "fault": o.get("fault"),
                    "reason": o.get("reason"),
                    "importance": spec.get("importance", "medium"),
                    "security_level": spec.get("security_level", "internal"),
                    "backup": version.backup if version else "—",
                    "age": age,
                    "taken_by_upkeep": o.get("taken_by_upkeep", False),
                    "restored_to": o.get("restored_to"),
                    "duration": f"{o['duration_s']:.1f} s" if o.get("duration_s") else None,
                    "checks": [c for c in (version.checks if version else [])],
                    "evidence": o.get("evidence") or "",
                    "keep": spec.get("keep_versions", 5),
                    "versions": [
                        {
                            "verified": v.verified_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                            "taken": v.taken_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
                            if v.taken_at
                            else "—",
                            "outcome": v.outcome,
                            "size": _human_size(v.size_bytes),
                            "archive": v.archive_path,
                        }
                        for v in archive[:10]
                    ],
                    "pruned": o.get("pruned", []),
                }
            )
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
                good=sum(1 for s in sources if s["outcome"] == "good"),
                bad=sum(1 for s in sources if s["outcome"] != "good"),
                run_id=run_id,
                flow_run_id=run.flow_run_id,
            )
        )
        stamp = run.started_at.astimezone(tz).strftime("%Y-%m-%d")
        kind = "drill" if drill else "backups"
        path = (
            settings.reports
            / safe_name(contract.code)
            / stamp[:4]
            / f"{kind}-{safe_name(contract.code)}-{run_id}-{stamp}.html"
        )
        write_atomic(path, html)
        run.report_path = str(path)
        db.add(run)
        code = contract.code
    lines = [
        f"## {'Disaster-recovery drill' if drill else 'Backup verification'} · {md_escape(code)}",
        "",
        f"[Full report]({link_target(path)})",
        "",
        "| system | kind | outcome | fault | detail |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {md_escape(s['system'])} | {md_escape(s['kind'])} | {md_escape(s['outcome'])} | "
        f"{md_escape(s.get('fault') or '')} | {md_escape(s.get('reason') or '')} |"
        for s in outcomes
    ]
    create_markdown_artifact(
        markdown="\n".join(lines),
        key=f"{kind}-{code.lower()}".replace("_", "-").replace(".", "-"),
        description=f"{kind} of {md_escape(code)}",
    )
    return str(path)


@task(name="tell-recipients")
def tell_recipients(
    run_id: int, report_path: str, outcomes: list[dict[str, Any]], drill: bool
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


@flow(name="backup-verification", flow_run_name=backup_run_name, persist_result=True)
def backup_verification(params: BackupParams) -> BackupOutcome | State[Any]:
    """Prove each backup source restores; keep the last good versions; report and tell."""
    if not params.drill and (ended := blackout_guard(params.contract)) is not None:
        return ended
    engine = engine_for(get_settings().db_url)
    with session_scope(engine) as db:
        contract = get_contract(session=db, code=params.contract)
        systems = contract_sources(contract, params.source)
        run = start_run(
            session=db,
            contract=contract,
            kind="drill" if params.drill else "backup",
            flow_run_id=current_flow_run_id(),
            requested_by=params.requested_by,
        )
        assert run.id is not None
        run_id = run.id
    futures = [
        verify_source.submit(params.contract, system, run_id, params.drill) for system in systems
    ]
    outcomes: list[dict[str, Any]] = []
    status = RunStatus.COMPLETED
    for fut, system in zip(futures, systems, strict=True):
        fut.wait()
        if fut.state.is_completed():
            outcomes.append(fut.result())
        else:
            status = RunStatus.FAILED
            outcomes.append(
                {
                    "system": system,
                    "kind": "?",
                    "outcome": "bad",
                    "fault": "system",
                    "reason": "crashed",
                    "message": str(fut.state.message),
                    "evidence": "",
                }
            )
    with session_scope(engine) as db:
        finish_run(session=db, run_id=run_id, status=status)
    report = write_backup_report(run_id, outcomes, params.drill)
    if params.email_report or any(o["outcome"] != "good" for o in outcomes):
        tell_recipients(run_id, report, outcomes, params.drill)
    return BackupOutcome(run_id=run_id, report_path=report, sources=outcomes)
