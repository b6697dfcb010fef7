"""Verifying one backup source: freshness, restore test, records, archive, retention.

The kind-specific work (take a backup, restore it somewhere harmless, check it) is in
``tasks.backups``; this module decides what to do with the outcome and records it. Secrets
(database URLs, the restic password) are read here, from the environment variables and Prefect
Secret blocks the inventory names, and go nowhere but to the tool that needs them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.blocks.system import Secret
from sqlmodel import select

from upkeep.db import open_session
from upkeep.domain.backups import (
    SourceOutcome,
    Verdict,
    failure_finding,
    judge,
    retry,
    stale,
    to_prune,
)
from upkeep.domain.contract import BackupSourceSpec, ContractView
from upkeep.domain.retention import archive_path
from upkeep.models import Contract, Host, InspectionRun, Outcome, utcnow
from upkeep.settings import Settings, get_settings
from upkeep.tasks.backup_records import (
    backup_finding,
    prune,
    record_version,
    resolve_backup_finding,
    versions,
)
from upkeep.tasks.backups import files, postgresql, remote, restic
from upkeep.tasks.backups.base import (
    SCRATCH_PREFIX,
    STALE_SCRATCH,
    CheckCommands,
    Scratch,
    VerificationError,
    VerificationResult,
    cleanup_stale,
    latest_in,
)
from upkeep.tasks.backups.remote import BackupHost
from upkeep.tasks.inspect import target_for
from upkeep.tasks.records import get_contract
from upkeep.tasks.ssh import SshError, SshSession

__all__ = ["SourceOutcome", "verify_source", "verify_source_now", "contract_sources"]


class ConfigError(VerificationError):
    """A system fault that trying again cannot fix (a missing setting, an untrusted host key,
    a refused login): not retried."""

    def __init__(self, message: str, evidence: str = "") -> None:
        super().__init__("system", "source_unreadable", message, evidence=evidence)


def _env(name: str | None, what: str) -> str:
    if not name:
        raise ConfigError(f"no environment variable is named for {what}")
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"{what}: the environment variable {name} is not set")
    return value


def restic_password(source: BackupSourceSpec) -> str:
    if source.password_env:
        return _env(source.password_env, "the restic password")
    try:
        block: Any = Secret.load(str(source.password_secret))
        value = block.get()
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"the restic password secret {source.password_secret!r} "
            f"cannot be loaded ({type(exc).__name__})"
        ) from None
    return str(value)


@dataclass
class Ran:
    """What :func:`run_source` did: the verdict, whether upkeep took the backup now, and
    (for a backup fetched from its host) the local copy, valid until the run's stack closes."""

    result: VerificationResult
    taken: bool
    local_copy: Path | None = None


def _backup_host(contract_id: int, name: str, stack: ExitStack) -> BackupHost:
    """A connected :class:`BackupHost` for the contract's host ``name``, closed with ``stack``."""
    settings = get_settings()
    with open_session() as db:
        host = db.exec(
            select(Host).where(Host.contract_id == contract_id, Host.name == name)
        ).first()
        if host is None or not host.active:
            raise ConfigError(f"backup host {name!r} is not an active host of this contract")
        target = target_for(host, settings)
    session = SshSession(target, settings.ssh, settings.known_hosts_file)
    try:
        session.connect()
    except SshError as exc:
        message = f"cannot log in to the backup host {target.where}"
        if not exc.transient:
            raise ConfigError(message, evidence=f"{exc.kind}: {exc}") from exc
        raise VerificationError(
            "system", "source_unreadable", message, evidence=f"{exc.kind}: {exc}"
        ) from exc
    stack.callback(session.close)
    bhost = BackupHost(session)
    stack.callback(bhost.close)
    return bhost


def _staging(source: BackupSourceSpec, stack: ExitStack) -> Path:
    """A fresh local directory for a fetched backup, removed with ``stack``."""
    parent = Path(source.scratch) if source.scratch else get_settings().data_dir
    files_cleanup(parent)
    return stack.enter_context(Scratch(parent, prefix=SCRATCH_PREFIX + "fetch-"))


@dataclass
class _Job:
    """One source's verification in progress: its settings, the run's moment and mode, the
    connection to its backup host (if any) and the stack that closes what it opened."""

    source: BackupSourceSpec
    drill: bool
    now: datetime
    contract_id: int
    stack: ExitStack
    host: BackupHost | None

    @property
    def system(self) -> str:
        return self.source.system

    @property
    def location(self) -> str:
        return self.source.location

    @property
    def where(self) -> str:
        return f"{self.host.name}:{self.location}" if self.host else self.location

    def location_exists(self) -> bool:
        if self.host is not None:
            return self.host.is_dir(self.location)
        return Path(self.location).is_dir()

    @property
    def commands(self) -> CheckCommands:
        return CheckCommands.from_lines(self.source.commands, self.source.command_timeout)

    def need_new(self, taken_at: datetime | None, what: str, can_take: bool) -> bool:
        """True when a new full backup must be taken first (never in a drill)."""
        validity = self.source.validity_hours
        if not stale(taken_at, validity, self.now) or self.drill:
            return False
        if not can_take:
            raise VerificationError(
                "system",
                "no_backup",
                f"no backup of {self.system} in {self.where} within {validity:g} h and no "
                f"{what} to take one from",
            )
        return True

    def latest_or_new(
        self,
        *,
        parse: Callable[[str], tuple[str, datetime] | None],
        take_here: Callable[[], object],
        take_there: Callable[[BackupHost], object],
        what: str,
        can_take: bool,
    ) -> tuple[str, bool]:
        """(path of the backup to test, on the host when there is one; taken now?)."""

        def latest() -> tuple[str, datetime] | None:
            if self.host is not None:
                return remote.latest(self.host, self.location, self.system, parse)
            here = latest_in(Path(self.location), parse, self.system)
            return (str(here[0]), here[1]) if here else None

        found = latest()
        if found is None and (self.drill or not can_take) and not self.location_exists():
            raise VerificationError(
                "system",
                "location_missing",
                f"the backup location {self.where} does not exist",
                evidence=self.where,
            )
        taken = self.need_new(found[1] if found else None, what, can_take)
        if taken:
            if self.host is not None:
                take_there(self.host)
            else:
                take_here()
            found = latest()
        if found is None:
            raise VerificationError(
                "system", "no_backup", f"no backup of {self.system} in {self.where}"
            )
        return found[0], taken

    def fetch(self, path: str, *, with_manifest: bool = False) -> Path:
        """The backup at ``path`` as a local file: itself, or a copy fetched from the host into
        a staging directory that the stack removes."""
        if self.host is None:
            return Path(path)
        staging = _staging(self.source, self.stack)
        if with_manifest:
            return remote.fetch_files_backup(self.host, path, staging)
        return remote.fetch_file(self.host, path, staging)

    def label(self, path: str) -> str:
        return f"{self.host.name}:{path}" if self.host else path


def run_source(
    source: BackupSourceSpec, *, drill: bool, now: datetime, contract_id: int, stack: ExitStack
) -> Ran:
    """Find (or take) the backup to test and restore-test it.

    With ``host`` the backups are listed, taken and fetched on that host; the restore and the
    checks run here, in the scratch directory or on the scratch database server, or for files
    with ``scratch_host`` on that host.
    """
    host = _backup_host(contract_id, source.host, stack) if source.host else None
    job = _Job(source, drill, now, contract_id, stack, host)
    if source.kind == "files":
        return _verify_files(job)
    if source.kind == "postgresql":
        return _verify_postgresql(job)
    return _verify_restic(job)


def _verify_files(job: _Job) -> Ran:
    source, system, location = job.source, job.system, job.location
    path, taken = job.latest_or_new(
        parse=files.parse_backup_name,
        take_here=lambda: files.take_backup(Path(str(source.source)), Path(location), system),
        take_there=lambda h: remote.take_files_backup(h, str(source.source), location, system),
        what="source",
        can_take=bool(source.source),
    )
    expected = source.expected_files
    if job.host is not None and source.scratch_host:
        on = (
            job.host
            if source.scratch_host == job.host.name
            else _backup_host(job.contract_id, source.scratch_host, job.stack)
        )
        result = remote.verify_files_on_host(
            on, path, str(source.scratch), expected=expected, backup_host=job.host
        )
        return Ran(result, taken)
    archive = job.fetch(path, with_manifest=True)
    scratch = Path(str(source.scratch))
    files_cleanup(scratch)
    result = files.verify(
        archive,
        scratch,
        expected=expected,
        source_dir=Path(source.source) if source.source and not job.host else None,
        commands=job.commands,
    )
    result.backup = job.label(path)
    return Ran(result, taken, archive if job.host else None)


def _verify_postgresql(job: _Job) -> Ran:
    source, system, location = job.source, job.system, job.location
    scratch_url = _env(source.scratch_database_env, "the scratch database server")
    source_url = (
        _env(source.source_database_env, "the source database")
        if source.source_database_env
        else None
    )
    path, taken = job.latest_or_new(
        parse=postgresql.parse_backup_name,
        take_here=lambda: postgresql.take_backup(str(source_url), Path(location), system),
        take_there=lambda h: remote.take_pg_dump(h, str(source.dump_database), location, system),
        what="dump_database" if job.host else "source database",
        can_take=bool(source.dump_database) if job.host else source_url is not None,
    )
    dump = job.fetch(path)
    postgresql.cleanup_stale_databases(scratch_url)
    result = postgresql.verify(
        dump,
        scratch_url,
        tables=source.tables,
        sql_checks=source.sql_checks,
        source_url=source_url,
        commands=job.commands,
    )
    result.backup = job.label(path)
    return Ran(result, taken, dump if job.host else None)


def _verify_restic(job: _Job) -> Ran:
    source, location = job.source, job.location
    password = restic_password(source)
    snapshot = restic.latest_snapshot(location, password=password)
    taken = job.need_new(snapshot[1] if snapshot else None, "source", bool(source.source))
    if taken:
        if job.host is None:
            restic.take_backup(Path(str(source.source)), location, password=password)
        else:
            remote.take_restic_backup(job.host, str(source.source), location, password=password)
    scratch = Path(str(source.scratch))
    files_cleanup(scratch)
    result = restic.verify(
        location,
        scratch,
        password=password,
        read_data_subset=source.read_data_subset,
        expected=source.expected_files,
        commands=job.commands,
    )
    return Ran(result, taken)


def files_cleanup(scratch: Path) -> None:
    """Remove scratch directories that killed runs left behind (older than ``STALE_SCRATCH``,
    so a verification still running beside this one keeps its own)."""
    if scratch.is_dir():
        cleanup_stale(scratch, older_than=STALE_SCRATCH)


def archive_copy(
    settings: Settings, source: BackupSourceSpec, result: VerificationResult, local: Path | None
) -> str | None:
    """Keep a copy of a verified backup file in the archive layout; restic keeps its own.
    ``local`` is the fetched copy of a backup on another host (else ``result.backup``)."""
    if result.kind == "restic" or (local is None and source.host):
        return None  # restic keeps its own versions; a backup restored on a host stays there
    src = local or Path(result.backup)
    target = archive_path(
        settings.data_dir / "archive",
        source.system,
        source.security_level,
        source.importance,
        result.taken_at,
        src.name,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, target)
    if result.kind == "files" and files.manifest_for(src).exists():
        shutil.copy2(files.manifest_for(src), files.manifest_for(target))
    return str(target)


def _with_retry(
    source: BackupSourceSpec,
    drill: bool,
    now: datetime,
    contract_id: int,
    stack: ExitStack,
    attempts: int = 2,
) -> Ran:
    """Run the source, once more after a system fault that may pass (:func:`retry`)."""
    for attempt in range(1, attempts + 1):
        try:
            return run_source(source, drill=drill, now=now, contract_id=contract_id, stack=stack)
        except ConfigError:
            raise
        except VerificationError as exc:
            if not retry(exc.fault, exc.reason, attempt, attempts):
                raise
            get_run_logger().warning("%s: %s, trying again", source.system, exc)
    raise AssertionError("unreachable")


def _attempt(
    source: BackupSourceSpec, drill: bool, now: datetime, contract_id: int, stack: ExitStack
) -> tuple[Verdict, Ran | VerificationError]:
    """Try the source (with its retry) and judge it: the verdict, and what it was judged on."""
    try:
        ran = _with_retry(source, drill, now, contract_id, stack)
    except VerificationError as exc:
        return judge((exc.fault, exc.reason, exc.message, exc.evidence)), exc
    return judge(None), ran


def verify_source_now(
    contract_code: str, system: str, run_id: int, drill: bool = False
) -> SourceOutcome:
    """Verify one source and record everything; a failure is an outcome, not an exception."""
    with open_session() as db:
        contract = ContractView.of(get_contract(session=db, code=contract_code))
    source = contract.backup_source(system)  # KeyError (a LookupError) when there is none
    now = utcnow()
    with ExitStack() as stack:
        verdict, what = _attempt(source, drill, now, contract.id, stack)
        if isinstance(what, VerificationError):
            return _record_bad(source, drill, run_id, contract.id, verdict, what)
        return _record_good(source, drill, run_id, contract.id, what)


def _common(source: BackupSourceSpec, drill: bool, contract_id: int) -> dict[str, Any]:
    """What every version row of ``source`` in this run holds."""
    return dict(
        contract_id=contract_id,
        system=source.system,
        kind=source.kind,
        security_level=source.security_level,
        importance=source.importance,
        drill=drill,
        run_kind="drill" if drill else "verification",
    )


def _record_bad(
    source: BackupSourceSpec,
    drill: bool,
    run_id: int,
    contract_id: int,
    verdict: Verdict,
    error: VerificationError,
) -> SourceOutcome:
    """Record a failed verification: its version row and the system's backup finding."""
    finding = failure_finding(source.system, source.importance, verdict)
    with open_session() as db:
        run = db.get(InspectionRun, run_id)
        assert run is not None
        v = record_version(
            session=db,
            backup=verdict.message[:1000],
            outcome=verdict.outcome,
            fault=verdict.fault,
            reason=verdict.reason,
            evidence=verdict.evidence,
            checks=[c._asdict() for c in error.checks],
            flow_run_id=run.flow_run_id,
            **_common(source, drill, contract_id),
        )
        backup_finding(
            session=db,
            run=run,
            system=source.system,
            severity=finding.severity,
            message=finding.message,
            evidence=finding.evidence,
            recommendation=finding.recommendation,
        )
        return SourceOutcome(
            system=source.system,
            kind=source.kind,
            outcome=verdict.outcome,
            fault=verdict.fault,
            reason=verdict.reason,
            message=verdict.message,
            evidence=verdict.evidence,
            version_id=v.id,
        )


def _record_good(
    source: BackupSourceSpec, drill: bool, run_id: int, contract_id: int, ran: Ran
) -> SourceOutcome:
    """Record a verified backup: archive it, resolve the finding, apply retention (a drill
    only records)."""
    settings = get_settings()
    result = ran.result
    with open_session() as db:
        run = db.get(InspectionRun, run_id)
        assert run is not None
        archived = None if drill else archive_copy(settings, source, result, ran.local_copy)
        v = record_version(
            session=db,
            backup=result.backup,
            taken_at=result.taken_at,
            taken_by_upkeep=ran.taken,
            size_bytes=result.size_bytes,
            checksum=result.checksum,
            outcome=Outcome.GOOD,
            checks=[c._asdict() for c in result.checks],
            duration_s=result.duration_s,
            archive_path=archived,
            flow_run_id=run.flow_run_id,
            **_common(source, drill, contract_id),
        )
        resolve_backup_finding(session=db, run=run, system=source.system)
        pruned: list[str] = []
        if not drill:
            stored = versions(session=db, contract_id=contract_id, system=source.system)
            pruned = prune(session=db, doomed=to_prune(stored, source.keep_versions))
        return SourceOutcome(
            system=source.system,
            kind=source.kind,
            outcome=Outcome.GOOD,
            version_id=v.id,
            taken_by_upkeep=ran.taken,
            pruned=pruned,
            duration_s=result.duration_s,
            restored_to=result.restored_to,
        )


@task(name="verify-backup", task_run_name="verify {system}")
def verify_source(
    contract_code: str, system: str, run_id: int, drill: bool = False
) -> SourceOutcome:
    """Prefect task around :func:`verify_source_now` (one per source; one bad source never
    stops the others)."""
    outcome = verify_source_now(contract_code, system, run_id, drill)
    log = get_run_logger()
    if outcome.good:
        log.info(
            "%s: restored and verified%s",
            system,
            " (taken now: the latest was too old)" if outcome.taken_by_upkeep else "",
        )
    else:
        log.warning("%s: %s fault (%s): %s", system, outcome.fault, outcome.reason, outcome.message)
    return outcome


def contract_sources(contract: Contract | ContractView, only: str | None) -> list[str]:
    """The systems to verify: every backup source of the contract, or only ``only``."""
    view = contract if isinstance(contract, ContractView) else ContractView.of(contract)
    names = [s.system for s in view.backup_sources]
    if only is not None and only not in names:
        raise LookupError(
            f"contract {view.code} has no backup source {only!r} "
            f"(known: {', '.join(names) or 'none'})"
        )
    return [only] if only else names
