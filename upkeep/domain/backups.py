"""The decisions of a backup-restore verification, without the database or the tools.

* :func:`stale`: is the latest backup past its validity (then a new full one is taken)?
* :func:`retry`: is a failed attempt worth one more try (a system fault that may pass)?
* :func:`judge`: what a verification attempt comes to: good, or bad with whose fault and why.
* :func:`failure_finding`: the finding a bad verification raises (severity by importance,
  what to do by fault).
* :func:`to_prune`: which stored versions retention lets go (:mod:`upkeep.domain.retention`).
* :class:`SourceOutcome`: one source's outcome, as the verification task hands it on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

from pydantic import BaseModel, ConfigDict

from upkeep.domain.checks.base import Severity
from upkeep.domain.contract import BackupSourceSpec
from upkeep.domain.retention import Version, backup_key, plan_retention
from upkeep.models import BackupVersion
from upkeep.models.enums import Fault, Outcome

BACKUP_CHECK = "backup"
"""The check name of a backup finding (a finding about a system's backups, not a host)."""

RECOMMEND = {
    Fault.BACKUP: "The backup itself is damaged or incomplete: take a new full backup, find out "
    "why the last one broke (disk, transfer, the backup job's log), and keep the last good "
    "version until a new one verifies.",
    Fault.SYSTEM: "The system that makes or holds the backups failed: check the backup job, "
    "the source's availability and the storage, then run the verification again.",
}
SEVERITY_BY_IMPORTANCE = {
    "critical": Severity.CRITICAL,
    "high": Severity.CRITICAL,
    "medium": Severity.MAJOR,
    "low": Severity.MINOR,
}
_UNKNOWN_SPEC = BackupSourceSpec.model_construct(system="?", kind="files", location="?")
"""A source no longer in the contract reads with the defaults (importance, retention...)."""
TRANSIENT = frozenset({"source_unreadable", "backup_command_failed", "restore_failed"})
"""System faults that may pass (a database restarting, a host rebooting): tried once more."""


def stale(taken_at: datetime | None, validity_hours: float, now: datetime) -> bool:
    """Whether a backup taken at ``taken_at`` (None: there is none) is too old at ``now``."""
    return taken_at is None or now - taken_at > timedelta(hours=validity_hours)


def retry(fault: Fault, reason: str, attempt: int, attempts: int) -> bool:
    """Whether a failed attempt is tried again: only a transient system fault, and only while
    attempts are left (a damaged backup, a missing setting or a full disk never)."""
    return fault == Fault.SYSTEM and reason in TRANSIENT and attempt < attempts


class Verdict(BaseModel):
    """What one verification attempt comes to."""

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    fault: Fault | None = None
    reason: str | None = None
    message: str = ""
    evidence: str = ""

    @property
    def good(self) -> bool:
        return self.outcome == Outcome.GOOD


def judge(failure: tuple[Fault | str, str, str, str] | None) -> Verdict:
    """The verdict of an attempt: ``None`` when the backup restored and passed every check,
    else its failure as (fault, reason, message, evidence)."""
    if failure is None:
        return Verdict(outcome=Outcome.GOOD)
    fault, reason, message, evidence = failure
    return Verdict(
        outcome=Outcome.BAD, fault=Fault(fault), reason=reason, message=message, evidence=evidence
    )


class FindingDraft(BaseModel):
    """The finding a bad verification opens (or refreshes)."""

    model_config = ConfigDict(frozen=True)

    severity: Severity
    message: str
    evidence: str
    recommendation: str


def failure_finding(system: str, importance: str, verdict: Verdict) -> FindingDraft:
    """The finding for a bad ``verdict`` of ``system``: as severe as the system is important,
    saying whose fault it is and what to do."""
    if verdict.fault is None:
        raise ValueError("a good verdict raises no finding")
    return FindingDraft(
        severity=SEVERITY_BY_IMPORTANCE.get(importance, Severity.MAJOR),
        message=f"backup of {system} failed verification: the {verdict.fault} "
        f"is at fault ({verdict.reason}): {verdict.message}",
        evidence=verdict.evidence,
        recommendation=RECOMMEND[verdict.fault],
    )


def to_prune(stored: Sequence[BackupVersion], keep: int) -> list[BackupVersion]:
    """The stored versions (not pruned, no drills) that retention lets go when ``keep`` good
    backups must stay; by :func:`upkeep.domain.retention.plan_retention`'s rules."""
    plan = plan_retention(
        [
            Version(
                id=str(v.id),
                taken_at=v.taken_at or v.verified_at,
                verified_at=v.verified_at,
                outcome=Outcome.GOOD if v.outcome == Outcome.GOOD else Outcome.BAD,
                key=backup_key(v.backup, v.checksum),
            )
            for v in stored
        ],
        keep,
    )
    doomed = {d.id for d in plan}
    return [v for v in stored if str(v.id) in doomed]


class SourceOutcome(BaseModel):
    """One backup source's outcome in a run, as the verification task returns it."""

    system: str
    kind: str = "?"
    outcome: Outcome
    fault: Fault | None = None
    reason: str | None = None
    message: str = ""
    evidence: str = ""
    version_id: int | None = None
    taken_by_upkeep: bool = False
    pruned: list[str] = []
    duration_s: float | None = None
    restored_to: str | None = None

    @property
    def good(self) -> bool:
        return self.outcome == Outcome.GOOD

    @classmethod
    def crashed(cls, system: str, message: str) -> SourceOutcome:
        """The outcome of a source whose task crashed (a bug or a killed worker)."""
        return cls(
            system=system,
            kind="?",
            outcome=Outcome.BAD,
            fault=Fault.SYSTEM,
            reason="crashed",
            message=message,
        )


def human_size(n: int | None) -> str:
    """``n`` bytes as people read it: ``512 B``, ``1.5 KiB`` ... ``3.0 GiB``; ``—`` for None."""
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GiB"


def report_source(
    outcome: SourceOutcome,
    spec: BackupSourceSpec | None,
    version: BackupVersion | None,
    archive: Sequence[BackupVersion],
    run_started: datetime,
    zone: tzinfo,
) -> dict[str, Any]:
    """One source's section of the backup report: its outcome, the version this run
    recorded, and the archive (newest first, at most 10 shown), times in ``zone``."""
    spec = spec or _UNKNOWN_SPEC

    def local(at: datetime) -> str:
        return at.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    age = None
    if version is not None and version.taken_at is not None:
        age = f"{(run_started - version.taken_at).total_seconds() / 3600:.1f} h"
    return {
        "system": outcome.system,
        "kind": outcome.kind,
        "outcome": outcome.outcome,
        "fault": outcome.fault,
        "reason": outcome.reason,
        "importance": spec.importance,
        "security_level": spec.security_level,
        "backup": version.backup if version else "—",
        "age": age,
        "taken_by_upkeep": outcome.taken_by_upkeep,
        "restored_to": outcome.restored_to,
        "duration": f"{outcome.duration_s:.1f} s" if outcome.duration_s else None,
        "checks": list(version.checks if version else []),
        "evidence": outcome.evidence or "",
        "keep": spec.keep_versions,
        "versions": [
            {
                "verified": local(v.verified_at),
                "taken": local(v.taken_at) if v.taken_at else "—",
                "outcome": v.outcome,
                "size": human_size(v.size_bytes),
                "archive": v.archive_path,
            }
            for v in archive[:10]
        ],
        "pruned": outcome.pruned,
    }
