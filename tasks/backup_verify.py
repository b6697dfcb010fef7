"""Verifying one backup source: freshness, restore test, records, archive, retention.

The kind-specific work (take a backup, restore it somewhere harmless, check it) is in
``tasks.backups``; this module decides what to do with the outcome and records it. Secrets
(database URLs, the restic password) are read here, from the environment variables and Prefect
Secret blocks the inventory names, and go nowhere but to the tool that needs them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from models import Contract, InspectionRun, utcnow
from tasks.backup_records import (
    backup_finding,
    prune,
    record_version,
    resolve_backup_finding,
    versions,
)
from tasks.backups.base import VerificationError, VerificationResult
from upkeep.db import engine_for, session_scope
from upkeep.settings import Settings, get_settings

RECOMMEND = {
    "backup": "The backup itself is damaged or incomplete: take a new full backup, find out why "
    "the last one broke (disk, transfer, the backup job's log), and keep the last good "
    "version until a new one verifies.",
    "system": "The system that makes or holds the backups failed: check the backup job, the "
    "source's availability and the storage, then run the verification again.",
}


@dataclass
class SourceOutcome:
    system: str
    kind: str
    outcome: str
    fault: str | None = None
    reason: str | None = None
    message: str = ""
    evidence: str = ""
    version_id: int | None = None
    taken_by_upkeep: bool = False
    pruned: list[str] = field(default_factory=list)
    duration_s: float | None = None


class ConfigError(VerificationError):
    def __init__(self, message: str) -> None:
        super().__init__("system", "source_unreadable", message)


def _env(name: str | None, what: str) -> str:
    if not name:
        raise ConfigError(f"no environment variable is named for {what}")
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"{what}: the environment variable {name} is not set")
    return value


def restic_password(source: dict[str, Any]) -> str:
    if source.get("password_env"):
        return _env(source["password_env"], "the restic password")
    from prefect.blocks.system import Secret

    try:
        block: Any = Secret.load(source["password_secret"])
        value = block.get()
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"the restic password secret {source['password_secret']!r} "
            f"cannot be loaded ({type(exc).__name__})"
        ) from None
    return str(value)


def _stale(taken_at: datetime | None, validity_hours: float, now: datetime) -> bool:
    return taken_at is None or now - taken_at > timedelta(hours=validity_hours)


def run_source(
    source: dict[str, Any], *, drill: bool, now: datetime
) -> tuple[VerificationResult, bool]:
    """Find (or take) the backup to test and restore-test it. Returns (result, taken now)."""
    from tasks.backups import files, postgresql, restic

    kind, system = source["kind"], source["system"]
    location = Path(source["location"])
    validity = float(source.get("validity_hours", 26))
    taken = False
    if kind == "files":
        latest = files.latest_backup(location, system)
        if _stale(latest[1] if latest else None, validity, now) and not drill:
            if not source.get("source"):
                raise VerificationError(
                    "system",
                    "no_backup",
                    f"no backup of {system} within {validity:g} h and no source to take one from",
                )
            files.take_backup(Path(source["source"]), location, system)
            latest, taken = files.latest_backup(location, system), True
        if latest is None:
            raise VerificationError("system", "no_backup", f"no backup of {system} in {location}")
        scratch = Path(source["scratch"])
        files_cleanup(scratch)
        return files.verify(
            latest[0],
            scratch,
            expected=source.get("expected_files", []),
            source_dir=Path(source["source"]) if source.get("source") else None,
        ), taken
    if kind == "postgresql":
        scratch_url = _env(source.get("scratch_database_env"), "the scratch database server")
        source_url = (
            _env(source["source_database_env"], "the source database")
            if source.get("source_database_env")
            else None
        )
        latest = postgresql.latest_backup(location, system)
        if _stale(latest[1] if latest else None, validity, now) and not drill:
            if source_url is None:
                raise VerificationError(
                    "system",
                    "no_backup",
                    f"no backup of {system} within {validity:g} h and no source database to dump",
                )
            postgresql.take_backup(source_url, location, system)
            latest, taken = postgresql.latest_backup(location, system), True
        if latest is None:
            raise VerificationError("system", "no_backup", f"no dump of {system} in {location}")
        postgresql.cleanup_stale_databases(scratch_url)
        return postgresql.verify(
            latest[0],
            scratch_url,
            tables=source.get("tables", {}),
            sql_checks=source.get("sql_checks", []),
            source_url=source_url,
        ), taken
    password = restic_password(source)
    snapshot = restic.latest_snapshot(location, password=password)
    if _stale(snapshot[1] if snapshot else None, validity, now) and not drill:
        if not source.get("source"):
            raise VerificationError(
                "system", "no_backup", f"no snapshot of {system} within {validity:g} h"
            )
        restic.take_backup(Path(source["source"]), location, password=password)
        taken = True
    scratch = Path(source["scratch"])
    files_cleanup(scratch)
    return restic.verify(
        location,
        scratch,
        password=password,
        read_data_subset=source.get("read_data_subset"),
        expected=source.get("expected_files", []),
    ), taken


def files_cleanup(scratch: Path) -> None:
    """Remove scratch directories that killed runs left behind (older than two hours, so a
    verification still running beside this one keeps its own)."""
    from tasks.backups.base import cleanup_stale

    if scratch.is_dir():
        cleanup_stale(scratch, older_than=timedelta(hours=2))


def archive_copy(
    settings: Settings, source: dict[str, Any], result: VerificationResult
) -> str | None:
    """Keep a copy of a verified backup file in the archive layout; restic keeps its own."""
    from tasks.backups.retention import archive_path

    if result.kind == "restic":
        return None
    src = Path(result.backup)
    target = archive_path(
        settings.data_dir / "archive",
        source["system"],
        source.get("security_level", "internal"),
        source.get("importance", "medium"),
        result.taken_at,
        src.name,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, target)
    manifest = src.with_name(src.name.split(".tar")[0] + ".sha256")
    if manifest.exists():
        shutil.copy2(manifest, target.with_name(target.name.split(".tar")[0] + ".sha256"))
    return str(target)


TRANSIENT = {"source_unreadable", "backup_command_failed", "restore_failed"}


def _with_retry(
    source: dict[str, Any], drill: bool, now: datetime, attempts: int = 2
) -> tuple[VerificationResult, bool]:
    """A system fault that may pass (a database restarting) is tried once more; a damaged
    backup, a missing setting or a full disk is not."""
    for attempt in range(1, attempts + 1):
        try:
            return run_source(source, drill=drill, now=now)
        except ConfigError:
            raise
        except VerificationError as exc:
            if exc.fault != "system" or exc.reason not in TRANSIENT or attempt == attempts:
                raise
            get_run_logger().warning("%s: %s, trying again", source["system"], exc)
    raise AssertionError("unreachable")


def verify_source_now(
    contract_code: str, system: str, run_id: int, drill: bool = False
) -> SourceOutcome:
    """Verify one source and record everything; a failure is an outcome, not an exception."""
    from tasks.backups.retention import plan_retention
    from tasks.records import get_contract

    settings = get_settings()
    engine = engine_for(settings.db_url)
    with session_scope(engine) as db:
        contract = get_contract(session=db, code=contract_code)
        source = next((s for s in contract.backup_sources if s["system"] == system), None)
        if source is None:
            raise LookupError(f"contract {contract_code} has no backup source {system!r}")
        contract_id = contract.id
    now = utcnow()
    common = dict(
        contract_id=contract_id,
        system=system,
        kind=source["kind"],
        security_level=source.get("security_level", "internal"),
        importance=source.get("importance", "medium"),
        drill=drill,
        run_kind="drill" if drill else "verification",
    )
    try:
        result, taken = _with_retry(source, drill, now)
    except VerificationError as exc:
        with session_scope(engine) as db:
            run = db.get(InspectionRun, run_id)
            assert run is not None
            v = record_version(
                session=db,
                backup=exc.message[:1000],
                outcome="bad",
                fault=exc.fault,
                reason=exc.reason,
                evidence=exc.evidence,
                checks=[c._asdict() for c in exc.checks],
                flow_run_id=run.flow_run_id,
                **common,
            )
            backup_finding(
                session=db,
                run=run,
                system=system,
                importance=source.get("importance", "medium"),
                message=f"backup of {system} failed verification: the {exc.fault} "
                f"is at fault ({exc.reason}): {exc.message}",
                evidence=exc.evidence,
                recommendation=RECOMMEND[exc.fault],
            )
            return SourceOutcome(
                system,
                source["kind"],
                "bad",
                exc.fault,
                exc.reason,
                exc.message,
                exc.evidence,
                v.id,
            )
    with session_scope(engine) as db:
        run = db.get(InspectionRun, run_id)
        assert run is not None
        archived = None if drill else archive_copy(settings, source, result)
        v = record_version(
            session=db,
            backup=result.backup,
            taken_at=result.taken_at,
            taken_by_upkeep=taken,
            size_bytes=result.size_bytes,
            checksum=result.checksum,
            outcome="good",
            checks=[c._asdict() for c in result.checks],
            duration_s=result.duration_s,
            archive_path=archived,
            flow_run_id=run.flow_run_id,
            **common,
        )
        resolve_backup_finding(session=db, run=run, system=system)
        pruned: list[str] = []
        assert contract_id is not None
        if not drill:
            from tasks.backups.retention import Version

            kept = versions(session=db, contract_id=contract_id, system=system)
            plan = plan_retention(
                [
                    Version(
                        id=str(k.id),
                        taken_at=k.taken_at or k.verified_at,
                        verified_at=k.verified_at,
                        outcome="good" if k.outcome == "good" else "bad",
                    )
                    for k in kept
                ],
                int(source.get("keep_versions", 5)),
            )
            doomed_ids = {d.id for d in plan}
            pruned = prune(session=db, doomed=[k for k in kept if str(k.id) in doomed_ids])
        return SourceOutcome(
            system,
            source["kind"],
            "good",
            version_id=v.id,
            taken_by_upkeep=taken,
            pruned=pruned,
            duration_s=result.duration_s,
        )


@task(name="verify-backup", task_run_name="verify {system}")
def verify_source(
    contract_code: str, system: str, run_id: int, drill: bool = False
) -> dict[str, Any]:
    """Prefect task around :func:`verify_source_now` (one per source; one bad source never
    stops the others)."""
    outcome = verify_source_now(contract_code, system, run_id, drill)
    log = get_run_logger()
    if outcome.outcome == "good":
        log.info(
            "%s: restored and verified%s",
            system,
            " (taken now: the latest was too old)" if outcome.taken_by_upkeep else "",
        )
    else:
        log.warning("%s: %s fault (%s): %s", system, outcome.fault, outcome.reason, outcome.message)
    return outcome.__dict__


def contract_sources(contract: Contract, only: str | None) -> list[str]:
    names = [s["system"] for s in contract.backup_sources]
    if only is not None and only not in names:
        raise LookupError(
            f"contract {contract.code} has no backup source {only!r} "
            f"(known: {', '.join(names) or 'none'})"
        )
    return [only] if only else names
