"""The figures of a service report, from plain rows: run tallies, finding tallies by severity
and by host, the order findings are listed in, and the planned runs that never ran. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, tzinfo

from upkeep.domain.findings import severity_rank
from upkeep.domain.inspection_report import SEVERITIES
from upkeep.domain.service_report import (
    BackupVerification,
    FindingRow,
    HostTally,
    PeriodPlan,
    PlannedRun,
    RunRow,
    RunTally,
    SeverityTally,
    process_name,
)
from upkeep.models import RunStatus

NO_END = "no end was recorded: the run is still going, or its process died"


def by_severity_then_host(row: FindingRow) -> tuple[int, str, str, str, datetime]:
    """Order of opened and resolved findings: worst first, then where, check, subject, age."""
    return (severity_rank(row.severity), row.where, row.check, row.subject, row.first_seen_at)


def open_order(row: FindingRow) -> tuple[int, datetime, str, str]:
    """Order of the findings open at the end: worst first, then oldest first."""
    return (severity_rank(row.severity), row.first_seen_at, row.where, row.check)


def verification_problem(v: BackupVerification) -> str:
    """What a failed verification did to the run that made it, in words."""
    return f"backup of {v.system} failed verification {v.id}: {v.verdict.removeprefix('FAILED: ')}"


def run_problems(
    run_id: int,
    status: str,
    hosts: Sequence[str],
    verifications: Iterable[BackupVerification],
    waiting: Sequence[str] | None,
) -> tuple[str, ...]:
    """What went wrong in run ``run_id``: the hosts it could not inspect (``hosts``), the
    backups it verified that failed, and for a run with no end the gates it waits on
    (``waiting``), or :data:`NO_END` when it waits on none."""
    problems = list(hosts)
    problems += [
        verification_problem(v) for v in verifications if v.run_id == run_id and not v.good
    ]
    if status == RunStatus.RUNNING:
        problems += [NO_END] if waiting is None else waiting
    return tuple(problems)


def run_tallies(runs: Iterable[RunRow]) -> list[RunTally]:
    """The runs by kind and verdict, kinds in the order of their process names."""
    by_kind: dict[str, dict[str, list[int]]] = {}
    for run in runs:
        by_kind.setdefault(run.kind, {}).setdefault(run.verdict, []).append(run.id)
    return [
        RunTally(
            kind=kind,
            completed=tuple(v.get("completed", [])),
            with_failures=tuple(v.get("completed with failures", [])),
            failed=tuple(v.get("failed", [])),
            cancelled=tuple(v.get("cancelled", [])),
            unfinished=tuple(v.get("not finished", [])),
        )
        for kind, v in sorted(by_kind.items(), key=lambda kv: process_name(kv[0]))
    ]


def severity_tallies(
    opened: Sequence[FindingRow], resolved: Sequence[FindingRow], still: Sequence[FindingRow]
) -> list[SeverityTally]:
    """Opened, resolved and open-at-the-end findings per severity: every known severity
    (worst first), then any other in the order of its name."""
    seen = {r.severity for r in (*opened, *resolved, *still)}
    ordered = list(SEVERITIES) + sorted(seen - set(SEVERITIES))
    return [
        SeverityTally(
            severity=sev,
            opened=sum(r.severity == sev for r in opened),
            resolved=sum(r.severity == sev for r in resolved),
            open_at_end=sum(r.severity == sev for r in still),
        )
        for sev in ordered
    ]


def host_tallies(
    opened: Sequence[FindingRow], resolved: Sequence[FindingRow], still: Sequence[FindingRow]
) -> list[HostTally]:
    """Opened, resolved and open-at-the-end findings per host (or ``backups of <system>``)."""
    where = sorted({r.where for r in (*opened, *resolved, *still)})
    return [
        HostTally(
            host=w,
            opened=sum(r.where == w for r in opened),
            resolved=sum(r.where == w for r in resolved),
            open_at_end=sum(r.where == w for r in still),
        )
        for w in where
    ]


RUN_KINDS: Mapping[str, str] = {
    "inspection": "inspection",
    "recheck": "recheck",
    "backup_verification": "backup",
    "drill": "drill",
}
"""Process key -> the kind of run its flow records; processes not listed record no run."""
MATCH_BEFORE = timedelta(hours=1)
MATCH_AFTER = timedelta(hours=24)


def checkable(due: Sequence[PlannedRun], now: datetime) -> list[PlannedRun]:
    """The planned runs whose run should be on record by ``now``, by time: not skipped, of a
    process that records runs, and due."""
    return sorted(
        (p for p in due if not p.skipped and p.key in RUN_KINDS and p.at <= now),
        key=lambda p: (p.at, p.key),
    )


def missed_runs(
    due: Sequence[PlannedRun], runs: Sequence[RunRow], now: datetime
) -> list[PlannedRun]:
    """The planned runs (due by ``now``) with no recorded run of their process. Pure.

    A run of the process's kind started from an hour before to a day after the planned time
    (a late start, a retry, a run started by hand) counts for it; each run counts once.
    Skipped runs and processes that record no run are never missed.
    """
    by_start = sorted(runs, key=lambda r: (r.started_at, r.id))
    used: set[int] = set()
    missed = []
    for slot in checkable(due, now):
        kind = RUN_KINDS[slot.key]
        match = next(
            (
                r
                for r in by_start
                if r.id not in used
                and r.kind == kind
                and slot.at - MATCH_BEFORE <= r.started_at < slot.at + MATCH_AFTER
            ),
            None,
        )
        if match is None:
            missed.append(slot)
        else:
            used.add(match.id)
    return missed


def due_in(
    due: Iterable[PlannedRun], start: datetime, end: datetime, zone: tzinfo
) -> list[PlannedRun]:
    """The planned runs of ``due`` in ``[start, end)`` (instants), their times in ``zone``."""
    return [replace(p, at=p.at.astimezone(zone)) for p in due if start <= p.at < end]


def plan_in_zone(plan: PeriodPlan, zone: tzinfo) -> PeriodPlan:
    """``plan`` with its runs' times in ``zone``, in time order (then by process)."""
    runs = (replace(p, at=p.at.astimezone(zone)) for p in plan.runs)
    return replace(plan, runs=tuple(sorted(runs, key=lambda p: (p.at, p.process))))
