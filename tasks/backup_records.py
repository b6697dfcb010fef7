"""Records of backup verification: versions, the archive, retention, findings."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from upkeep.domain.backups import BACKUP_CHECK, SEVERITY_BY_IMPORTANCE
from upkeep.domain.checks.base import Severity
from upkeep.models import BackupVersion, Finding, InspectionRun, utcnow
from upkeep.tasks.backups.files import ARCHIVE_SUFFIXES, MANIFEST_SUFFIX, manifest_for
from upkeep.tasks.records import resolve_system_finding, system_finding

__all__ = ["SEVERITY_BY_IMPORTANCE", "backup_finding", "prune", "record_version", "versions"]


def record_version(*, session: Session, **values: Any) -> BackupVersion:
    version = BackupVersion(**values)
    session.add(version)
    session.flush()
    return version


def versions(*, session: Session, contract_id: int, system: str) -> list[BackupVersion]:
    """Every version of ``system`` that is not pruned, newest first (drills excluded)."""
    return list(
        session.exec(
            select(BackupVersion)
            .where(
                BackupVersion.contract_id == contract_id,
                BackupVersion.system == system,
                col(BackupVersion.pruned_at).is_(None),
                BackupVersion.drill == False,  # noqa: E712
            )
            .order_by(col(BackupVersion.verified_at).desc(), col(BackupVersion.id).desc())
        )
    )


def prune(*, session: Session, doomed: list[BackupVersion]) -> list[str]:
    """Delete the archived copies of ``doomed`` (with a file backup's ``.sha256`` manifest
    beside it) and mark them pruned; returns what went.

    A file that a version still kept also points at (two backups taken within the same
    second share a name) is left in place: pruning never takes a kept version's copy.
    """
    doomed_ids = {v.id for v in doomed}
    still_used = {
        v.archive_path
        for d in {(v.contract_id, v.system) for v in doomed}
        for v in versions(session=session, contract_id=d[0], system=d[1])
        if v.id not in doomed_ids and v.archive_path
    }
    gone = []
    touched: set[Path] = set()
    for v in doomed:
        if v.archive_path and v.archive_path not in still_used:
            path = Path(v.archive_path)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
                touched.add(path.parent)
        v.pruned_at = utcnow()
        session.add(v)
        gone.append(v.archive_path or v.backup)
    for directory in touched:
        _remove_orphan_manifests(directory)
    return gone


def _remove_orphan_manifests(directory: Path) -> None:
    """Remove the ``.sha256`` manifests in an archive directory whose archive is gone (this
    prune's, and those that earlier prunes left behind)."""
    if not directory.is_dir():
        return
    archives = {
        manifest_for(p)
        for p in directory.iterdir()
        if p.name.endswith(ARCHIVE_SUFFIXES) and p.is_file()
    }
    for manifest in directory.glob("*" + MANIFEST_SUFFIX):
        if manifest not in archives:
            manifest.unlink(missing_ok=True)


def backup_finding(
    *,
    session: Session,
    run: InspectionRun,
    system: str,
    message: str,
    evidence: str,
    recommendation: str,
    severity: Severity | None = None,
    importance: str | None = None,
) -> Finding:
    """Open (or refresh) the finding that ``system``'s backups fail verification, as
    ``severity`` (else as severe as the system's ``importance``)."""
    if severity is None:
        severity = SEVERITY_BY_IMPORTANCE.get(importance or "medium", Severity.MAJOR)
    return system_finding(
        session=session,
        run=run,
        check=BACKUP_CHECK,
        subject=system,
        severity=severity,
        message=message,
        evidence=evidence,
        recommendation=recommendation,
    )


def resolve_backup_finding(*, session: Session, run: InspectionRun, system: str) -> bool:
    """A good verification resolves the system's open backup finding, if any."""
    return resolve_system_finding(session=session, run=run, check=BACKUP_CHECK, subject=system)
