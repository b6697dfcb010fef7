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
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from upkeep.domain.contract import ContractView
from upkeep.domain.releases import Declared, ReleaseError, ReleaseSpec, validate_release
from upkeep.models import Host, OutboxMessage, Release, utcnow
from upkeep.settings import get_settings
from upkeep.tasks.notify import queue_message, render_mail
from upkeep.tasks.records import get_contract
from upkeep.tasks.render import safe_name, write_atomic


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
    tz = ZoneInfo(view.timezone)
    due = row.window_at - timedelta(hours=spec.notice_hours)
    window = row.window_at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
    subject = f"[upkeep] Release notice: {row.system} {row.version} on {window} ({view.code})"
    mail = render_mail(
        get_settings().templates_dir,
        "release_notice",
        subject,
        {
            "contract_name": view.name,
            "contract_code": view.code,
            "system": row.system,
            "version": row.version,
            "window": window,
            "changes": row.changes,
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
