"""A service report's data: what a contract's maintenance did over a month, quarter or year.

Pure data, every time already in the contract's timezone; no database, no templates.
:mod:`upkeep.tasks.service_report` gathers it from the records, the figures it is built from
are in :mod:`upkeep.domain.service_figures`, and :mod:`upkeep.tasks.service_report_render`
turns it into a page, a Markdown artifact and a mail. Every headline figure lists the records
it counts (:attr:`ServiceReport.figures`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from upkeep.domain.backups import BACKUP_CHECK
from upkeep.domain.inspection_report import ContractInfo, CustomerInfo
from upkeep.domain.report_time import format_dt, human
from upkeep.models import RunStatus

"""The ``check`` of a finding about a system's backups (it has no host)."""

PROCESS_NAMES: Mapping[str, str] = {
    "inspection": "Health inspection",
    "recheck": "Re-check of open findings",
    "sweep": "Ad-hoc sweep",
    "demo": "Demonstration inspection",
    "backup": "Backup-restore verification",
    "backup_verification": "Backup-restore verification",
    "drill": "Disaster-recovery drill",
    "service_report": "Service report",
    "annual_plan": "Annual service plan",
    "patch_advisory": "Patch advisory",
    "patch": "Patch advisory",
    "patch-fix": "Patch after a fault",
    "interface_monitor": "Interface monitor",
    "interface-monitor": "Interface monitor",
    "interface_status": "Daily interface status",
    "interface-status": "Daily interface status",
    "release": "Release",
    "release-check": "Pre-release host check",
}
"""What a customer calls each process and run kind (process keys of the inventory and the
``kind`` of recorded runs)."""


def process_name(key: str) -> str:
    """``"Health inspection"`` for ``inspection``; an unknown key in plain words."""
    return PROCESS_NAMES.get(key) or key.replace("_", " ").replace("-", " ").capitalize()


RunVerdict = Literal["completed", "completed with failures", "failed", "cancelled", "not finished"]


@dataclass(frozen=True)
class RunRow:
    id: int
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    requested_by: str | None
    window: str | None
    report_path: str | None
    problems: tuple[str, ...] = ()
    """What went wrong inside a run that ran to its end (a backup that failed verification, a
    host that could not be inspected), or why a run has no end."""

    @property
    def process(self) -> str:
        return process_name(self.kind)

    @property
    def verdict(self) -> RunVerdict:
        if self.status == RunStatus.COMPLETED:
            return "completed with failures" if self.problems else "completed"
        if self.status == RunStatus.FAILED:
            return "failed"
        if self.status == RunStatus.CANCELLED:
            return "cancelled"
        return "not finished"

    @property
    def clean(self) -> bool:
        return self.verdict == "completed"

    @property
    def css(self) -> str:
        return "completed" if self.clean else "failed"


@dataclass(frozen=True)
class RunTally:
    """Runs of one kind in the period, by verdict; each figure lists the runs it counts."""

    kind: str
    completed: tuple[int, ...]
    with_failures: tuple[int, ...]
    failed: tuple[int, ...]
    cancelled: tuple[int, ...]
    unfinished: tuple[int, ...]

    @property
    def process(self) -> str:
        return process_name(self.kind)

    @property
    def all(self) -> tuple[int, ...]:
        return tuple(
            sorted(
                (*self.completed, *self.with_failures, *self.failed, *self.cancelled)
                + self.unfinished
            )
        )

    @property
    def total(self) -> int:
        return len(self.all)


@dataclass(frozen=True)
class FindingRow:
    id: int
    host: str | None
    """None for a finding about something that is not a host (a system's backups)."""
    check: str
    subject: str
    severity: str
    message: str
    recommendation: str
    first_seen_at: datetime
    resolved_at: datetime | None
    run_id: int | None = None
    """The run that first found it."""
    age: timedelta | None = None
    """For findings open at the end of the period: how long they had been open by then."""

    @property
    def where(self) -> str:
        """The host, or ``backups of <system>`` for a backup finding."""
        if self.host is not None:
            return self.host
        return f"backups of {self.subject}" if self.check == BACKUP_CHECK else self.subject or "—"

    @property
    def age_text(self) -> str:
        return "—" if self.age is None else human(self.age)

    @property
    def age_days(self) -> int:
        return 0 if self.age is None else self.age.days


@dataclass(frozen=True)
class SeverityTally:
    severity: str
    opened: int
    resolved: int
    open_at_end: int


@dataclass(frozen=True)
class HostTally:
    host: str
    """A host name, or ``backups of <system>``."""
    opened: int
    resolved: int
    open_at_end: int


@dataclass(frozen=True)
class BackupVerification:
    """One verification of one backup (a ``BackupVersion`` record)."""

    id: int
    system: str
    kind: str
    backup: str
    """The backup file or snapshot; for a failed one, what went wrong."""
    taken_at: datetime | None
    verified_at: datetime
    outcome: str
    fault: str | None = None
    reason: str | None = None
    drill: bool = False
    run_id: int | None = None

    @property
    def good(self) -> bool:
        return self.outcome == "good"

    @property
    def verdict(self) -> str:
        if self.good:
            return "restored and verified"
        return f"FAILED: the {self.fault or 'system'} is at fault ({self.reason or 'unknown'})"


@dataclass(frozen=True)
class ApproverTimes:
    approver: str
    decisions: int
    median: timedelta
    p90: timedelta
    longest: timedelta

    @property
    def median_text(self) -> str:
        return human(self.median)

    @property
    def p90_text(self) -> str:
        return human(self.p90)

    @property
    def longest_text(self) -> str:
        return human(self.longest)


@dataclass(frozen=True)
class GateRow:
    gate: str
    subject: str
    requested_at: datetime
    decided_at: datetime | None
    decision: str | None
    approver: str | None
    escalated: bool
    id: int = 0


@dataclass(frozen=True)
class ApprovalSummary:
    times: tuple[ApproverTimes, ...]
    rows: tuple[GateRow, ...]

    @property
    def gates(self) -> int:
        return len(self.rows)

    @property
    def escalations(self) -> int:
        return sum(g.escalated for g in self.rows)

    @property
    def expiries(self) -> int:
        return sum(g.decision == "expired" for g in self.rows)

    @property
    def pending(self) -> int:
        return sum(g.decision is None for g in self.rows)


@dataclass(frozen=True)
class PlannedRun:
    """One run the contract's cadences plan, after blackouts."""

    at: datetime
    """When it runs (for a skipped run: the slot that will not run)."""
    process: str
    """The process's name, as a customer calls it."""
    cadence: str
    """The cadence in words."""
    notes: tuple[str, ...] = ()
    """Why it is not at the cadence's time: moved by a blackout or by daylight saving."""
    skipped: bool = False
    key: str = ""
    """The process key of the inventory (``inspection``, ``backup_verification``, ...)."""

    @property
    def label(self) -> str:
        """``Health inspection planned for 2027-02-02 02:00 CET``."""
        return f"{self.process} planned for {format_dt(self.at)}"


@dataclass(frozen=True)
class PeriodPlan:
    """What the contract's cadences plan for a period (the next one, or the reported one to
    see what was missed), computed by the caller."""

    runs: tuple[PlannedRun, ...] = ()
    blackouts: tuple[str, ...] = ()
    """The period's blackout days, in words."""
    policy: str | None = None
    """What a blackout does to a run, in words."""
    note: str | None = None
    """What could not be planned (a cadence that cannot be read, ...); None when all was."""


@dataclass(frozen=True)
class Figure:
    """A headline number and the records it counts (``run 12``, ``finding 7``, ...)."""

    label: str
    refs: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.refs)


@dataclass(frozen=True)
class ServiceReport:
    """Everything one service report shows; pure data, times in the contract's timezone."""

    customer: CustomerInfo
    contract: ContractInfo
    kind: str
    label: str
    start: date
    end: date
    """Exclusive: the first day after the period."""
    runs: tuple[RunRow, ...]
    run_tallies: tuple[RunTally, ...]
    opened: tuple[FindingRow, ...]
    resolved: tuple[FindingRow, ...]
    open_at_end: tuple[FindingRow, ...]
    """Open at the end of the period, worst and oldest first."""
    by_severity: tuple[SeverityTally, ...]
    by_host: tuple[HostTally, ...]
    backups: tuple[BackupVerification, ...]
    approvals: ApprovalSummary
    next_start: date
    next_end: date
    plan: PeriodPlan
    generated_at: datetime
    backup_sources: tuple[str, ...] = ()
    """The systems whose backups the contract says to verify."""
    due: tuple[PlannedRun, ...] = ()
    """Runs the cadences planned in the period that should be on record."""
    missed: tuple[PlannedRun, ...] = ()
    """Of ``due``, those with no run of their process recorded."""
    flow_run_id: str | None = None

    @property
    def planned(self) -> tuple[PlannedRun, ...]:
        """The runs that will happen in the next period (skipped ones left out)."""
        return tuple(p for p in self.plan.runs if not p.skipped)

    @property
    def skipped(self) -> tuple[PlannedRun, ...]:
        return tuple(p for p in self.plan.runs if p.skipped)

    @property
    def plan_note(self) -> str | None:
        return self.plan.note

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def next_last_day(self) -> date:
        return self.next_end - timedelta(days=1)

    @property
    def period_text(self) -> str:
        return f"{self.start.isoformat()} – {self.last_day.isoformat()}"

    @property
    def next_period_text(self) -> str:
        return f"{self.next_start.isoformat()} – {self.next_last_day.isoformat()}"

    @property
    def runs_total(self) -> int:
        return len(self.runs)

    @property
    def runs_not_done(self) -> tuple[RunRow, ...]:
        """Runs that did not complete cleanly: with failures, failed, cancelled, unfinished."""
        return tuple(r for r in self.runs if not r.clean)

    @property
    def runs_failed(self) -> int:
        return len(self.runs_not_done)

    @property
    def backups_good(self) -> tuple[BackupVerification, ...]:
        return tuple(b for b in self.backups if b.good)

    @property
    def backups_failed(self) -> tuple[BackupVerification, ...]:
        return tuple(b for b in self.backups if not b.good)

    @property
    def unverified_sources(self) -> tuple[str, ...]:
        """Backup sources of the contract with no verification recorded in the period."""
        verified = {b.system for b in self.backups}
        return tuple(s for s in self.backup_sources if s not in verified)

    @property
    def figures(self) -> tuple[Figure, ...]:
        """The headline numbers, each with the records it counts (in id order)."""

        def refs(noun: str, ids: Iterable[int]) -> tuple[str, ...]:
            return tuple(f"{noun} {i}" for i in sorted(ids))

        return (
            Figure("runs", refs("run", (r.id for r in self.runs))),
            Figure("runs not completed cleanly", refs("run", (r.id for r in self.runs_not_done))),
            Figure("planned runs with no run recorded", tuple(p.label for p in self.missed)),
            Figure("findings opened", refs("finding", (f.id for f in self.opened))),
            Figure("findings resolved", refs("finding", (f.id for f in self.resolved))),
            Figure("open at the end", refs("finding", (f.id for f in self.open_at_end))),
            Figure("backup verifications", refs("verification", (b.id for b in self.backups))),
            Figure(
                "failed backup verifications",
                refs("verification", (b.id for b in self.backups_failed)),
            ),
            Figure("approval gates", refs("gate", (g.id for g in self.approvals.rows))),
        )

    @property
    def advice(self) -> tuple[FindingRow, ...]:
        """Open critical and major findings with a recommended action, worst first."""
        return tuple(
            f
            for f in self.open_at_end
            if f.severity in ("critical", "major") and f.recommendation.strip()
        )
