"""Declaring a release: validated against the inventory, stored with its test report.

The decisions are ``upkeep.domain.releases``; this reads the contract, the system's hosts and
blackouts, stores the row and keeps the test report file (copied under
``UPKEEP_DATA_DIR/releases/<contract>/``, with its SHA-256) so that what the customer reviews is
exactly what was declared.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import task
from sqlmodel import Session, col, select

from upkeep.db import open_session
from upkeep.domain.contract import ContractView
from upkeep.domain.releases import (
    TEST_REPORT_GATE,
    Declared,
    ReleaseError,
    ReleaseSpec,
    in_inbox,
    local_time,
    report_problems,
    validate_release,
)
from upkeep.models import Contract, Host, OutboxMessage, Release, utcnow
from upkeep.settings import get_settings
from upkeep.tasks.notify import queue_and_deliver, queue_message, render_mail
from upkeep.tasks.records import get_contract
from upkeep.tasks.render import safe_name, write_atomic
from upkeep.tasks.runs import schedule_deployment_run


def release_spec(view: ContractView, system: str) -> ReleaseSpec:
    """The system's release settings; ReleaseError names what is missing."""
    try:
        spec = view.system(system)
    except KeyError as exc:
        raise ReleaseError(exc.args[0]) from None
    if spec.release is None:
        raise ReleaseError(
            f"system {system} of {view.code} has no release settings (inventory: the system's "
            "release: release_command, rollback_command, ...)"
        )
    return spec.release


def _keep(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` whole (``write_atomic``, mode 0640); its SHA-256."""
    data = source.read_bytes()
    write_atomic(target, data)
    return hashlib.sha256(data).hexdigest()


def declare_release(
    *, session: Session, declared: Declared, declared_by: str, now: datetime | None = None
) -> tuple[Release, OutboxMessage | None]:
    """Validate and store the release with its test report, and queue the customer's notice
    (ReleaseError naming every problem; nothing is stored then). The row and the notice (None
    without report recipients)."""
    contract = get_contract(session=session, code=declared.contract)
    view = ContractView.of(contract)
    spec = release_spec(view, declared.system)
    hosts = session.exec(
        select(Host).where(
            Host.contract_id == view.id,
            Host.system == declared.system,
            col(Host.active).is_(True),
        )
    ).all()
    valid = validate_release(
        declared,
        timezone=view.timezone,
        system_hosts=[h.name for h in hosts],
        spec=spec,
        blackouts=view.blackout_days(),
        now=now or utcnow(),
    )
    row = Release(
        contract_id=view.id,
        system=valid.system,
        version=valid.version,
        changes=valid.changes,
        window_at=valid.window_utc,
        hosts=list(valid.hosts),
        canary_hosts=list(valid.canary),
        test_report_path="",
        test_report_sha256="",
        test_report_name=valid.test_report.name,
        declared_by=declared_by,
    )
    session.add(row)
    session.flush()
    target = (
        get_settings().data_dir
        / "releases"
        / safe_name(view.code)
        / f"{row.id}-{safe_name(valid.system)}-{safe_name(valid.version)}"
        f"{valid.test_report.suffix.lower()}"
    )
    row.test_report_sha256 = _keep(valid.test_report, target)
    row.test_report_path = str(target)
    session.add(row)
    notice = queue_notice(session=session, view=view, spec=spec, row=row, impact=declared.impact)
    return row, notice


def mail_context(view: ContractView, row: Release) -> dict[str, Any]:
    """What every release mail says: the contract, the system and version, the window (in the
    contract's timezone) and the changes."""
    return {
        "contract_name": view.name,
        "contract_code": view.code,
        "system": row.system,
        "version": row.version,
        "window": local_time(row.window_at, view.timezone),
        "changes": row.changes,
    }


DEFAULT_IMPACT = "Short interruptions are possible while each host switches to the new version."


def queue_notice(
    *, session: Session, view: ContractView, spec: ReleaseSpec, row: Release, impact: str
) -> OutboxMessage | None:
    """The customer's notice of the release, in the outbox, due ``notice_hours`` before the
    window (at once when that has passed); delivered by whatever delivers the outbox next
    (the approval watchdog every few minutes, any run's mail, ``upkeep outbox send``).
    None when the contract has no report recipients."""
    if not view.report_recipients:
        return None
    due = row.window_at - timedelta(hours=spec.notice_hours)
    window = local_time(row.window_at, view.timezone)
    subject = f"[upkeep] Release notice: {row.system} {row.version} on {window} ({view.code})"
    mail = render_mail(
        get_settings().templates_dir,
        "release_notice",
        subject,
        {
            **mail_context(view, row),
            "impact": impact.strip() or DEFAULT_IMPACT,
            "hosts": row.hosts,
            "canary": row.canary_hosts,
            "rollback_minutes": spec.rollback_limit_minutes,
            "soak_minutes": spec.soak_minutes,
        },
    )
    return queue_message(
        session=session,
        contract_id=view.id,
        kind="release_notice",
        subject=mail.subject,
        recipients=list(view.report_recipients),
        text_body=mail.text,
        html_body=mail.html,
        not_before=due,
    )


def list_releases(*, session: Session, contract: str | None = None) -> list[Release]:
    query = select(Release).order_by(col(Release.window_at), col(Release.id))
    if contract:
        query = query.where(Release.contract_id == get_contract(session=session, code=contract).id)
    return list(session.exec(query))


@task(name="mail-test-report")
def mail_test_report(release_id: int, sha256: str, round_no: int) -> list[str]:
    """The test report to the people who review it (the ``release-test-report`` gate's
    approvers), attached, once per report (``sha256``) and round; their codes follow in the
    gate's own mail. The addresses it went to."""
    settings = get_settings()
    with open_session() as db:
        row = db.get(Release, release_id)
        assert row is not None and row.test_report_sha256 == sha256
        view = ContractView.of(db.get_one(Contract, row.contract_id))
    reviewers = view.approvers_for(TEST_REPORT_GATE)
    mail = render_mail(
        settings.templates_dir,
        "release_test_report",
        f"[upkeep] Test report for review: {row.system} {row.version} ({view.code})",
        {
            **mail_context(view, row),
            "report_name": row.test_report_name,
            "sha256": sha256,
            "round_no": round_no,
        },
        attachments=[row.test_report_path],
    )
    recipients = [p.email for p in reviewers]
    queue_and_deliver(
        smtp=settings.smtp,
        contract_id=view.id,
        kind="release_test_report",
        subject=mail.subject,
        recipients=recipients,
        text_body=mail.text,
        html_body=mail.html,
        attachments=mail.attachments,
    )
    return recipients


def report_text(row: Release) -> str | None:
    """A Markdown test report's text (shown inline to its reviewers); None for HTML or PDF."""
    if not row.test_report_path.lower().endswith(".md"):
        return None
    return Path(row.test_report_path).read_text(encoding="utf-8", errors="replace")


def revision_kept(release_id: int, round_no: int) -> bool:
    """Whether the report revised after rejection ``round_no`` is kept already."""
    with open_session() as db:
        row = db.get(Release, release_id)
    return row is not None and Path(row.test_report_path).stem.endswith(f"-r{round_no}")


@task(name="replace-test-report")
def replace_test_report(release_id: int, source: str, engineer: str, round_no: int) -> str:
    """The engineer's new test report after a rejection, kept like the first (a new file
    under the release's name, its SHA-256 on the row); the new hash. Checked again here: the
    file must still exist."""
    path = in_inbox(source, get_settings().inbox)
    problems = report_problems(path)
    if problems:
        raise ReleaseError("; ".join(problems))
    with open_session() as db:
        row = db.get(Release, release_id)
        assert row is not None
        old = Path(row.test_report_path)
        target = old.with_name(f"{old.stem}-r{round_no}{path.suffix.lower()}")
        row.test_report_sha256 = _keep(path, target)
        row.test_report_path, row.test_report_name = str(target), path.name
        db.add(row)
        return row.test_report_sha256


def release_run_at(
    release_id: int, contract_code: str, requested_by: str | None, at: datetime | None = None
) -> str | None:
    """A run of the release on the contract's ``release`` deployment, started by Prefect's
    server at ``at`` (now by default: the review run a declaration starts); its id, or None
    when nothing serves that deployment."""
    return schedule_deployment_run(
        "release",
        contract_code,
        "release",
        {"params": {"release_id": release_id, "requested_by": requested_by}},
        at or utcnow(),
    )


@task(name="declare-release")
def declare(declared: Declared, declared_by: str) -> tuple[int, str | None]:
    """Declare (validated, the report kept, the notice queued; ReleaseError names every
    problem and nothing is stored): the release's id and when its notice is due."""
    with open_session() as db:
        row, notice = declare_release(session=db, declared=declared, declared_by=declared_by)
        assert row.id is not None
        due = notice.not_before.isoformat() if notice and notice.not_before else None
        return row.id, due
