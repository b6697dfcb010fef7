"""The pure parts of the reports: report times, service-report figures and inspection rows,
on plain values (no database, no templates)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from upkeep.domain.backups import BACKUP_CHECK
from upkeep.domain.inspection_report import (
    SEVERITIES,
    group_by_severity,
    measurement_row,
    severity_counts,
)
from upkeep.domain.inspection_report import (
    FindingRow as InspectionFinding,
)
from upkeep.domain.report_time import contract_zone, format_date, format_dt, human
from upkeep.domain.service_figures import (
    NO_END,
    by_severity_then_host,
    due_in,
    host_tallies,
    open_order,
    plan_in_zone,
    run_problems,
    run_tallies,
    severity_tallies,
    verification_problem,
)
from upkeep.domain.service_report import (
    BackupVerification,
    FindingRow,
    PeriodPlan,
    PlannedRun,
    RunRow,
)

BERLIN = ZoneInfo("Europe/Berlin")
T = datetime(2027, 2, 7, 1, 0, tzinfo=BERLIN)


def run(id: int, kind: str, status: str, problems: tuple[str, ...] = ()) -> RunRow:
    return RunRow(id, kind, status, T, None, None, None, None, problems)


def finding(
    id: int, severity: str, host: str | None, check: str = "disk", age_days: int = 0
) -> FindingRow:
    return FindingRow(
        id=id,
        host=host,
        check=check,
        subject="erp-db" if host is None else "/var",
        severity=severity,
        message="m",
        recommendation="",
        first_seen_at=T - timedelta(days=age_days),
        resolved_at=None,
    )


def truncated(run_id: int | None = 7) -> BackupVerification:
    return BackupVerification(
        id=3,
        system="erp-db",
        kind="files",
        backup="erp-db-20270207T010000Z.tar.gz",
        taken_at=None,
        verified_at=T,
        outcome="bad",
        fault="backup",
        reason="truncated",
        run_id=run_id,
    )


# --- report times -----------------------------------------------------------------------------


def test_report_times_in_words() -> None:
    assert format_dt(T) == "2027-02-07 01:00 CET"
    assert format_dt(None) == "—"
    assert format_date(T) == "2027-02-07"
    assert human(timedelta(seconds=12)) == "12s"
    assert human(timedelta(minutes=4, seconds=10)) == "4m 10s"
    assert human(timedelta(hours=2, minutes=5)) == "2h 05m"
    assert human(timedelta(days=3, hours=4, minutes=59)) == "3d 4h"


def test_an_unknown_timezone_shows_utc() -> None:
    assert contract_zone("Europe/Berlin") == BERLIN
    assert contract_zone("Mars/Olympus") is UTC
    assert contract_zone("") is UTC


# --- runs -------------------------------------------------------------------------------------


def test_run_problems_name_hosts_failed_backups_and_a_missing_end() -> None:
    unreachable = ["host web1 could not be inspected: timed out"]
    assert run_problems(7, "completed", unreachable, [truncated()], None) == (
        unreachable[0],
        "backup of erp-db failed verification 3: the backup is at fault (truncated)",
    )
    # Another run's verification, or a good one, is not this run's problem.
    good = BackupVerification(3, "erp-db", "files", "b", None, T, "good", run_id=7)
    assert run_problems(7, "completed", [], [truncated(run_id=8), good], None) == ()
    # A run with no end waits on its gates, or says it has no end.
    assert run_problems(7, "running", [], [], None) == (NO_END,)
    waiting = ["waiting for approval (gate 4, inspection-plan) since 2027-02-07 01:00 CET"]
    assert run_problems(7, "running", [], [], waiting) == tuple(waiting)
    assert run_problems(7, "completed", [], [], waiting) == ()


def test_verification_problem_reads_as_the_verdict() -> None:
    assert verification_problem(truncated()) == (
        "backup of erp-db failed verification 3: the backup is at fault (truncated)"
    )


def test_run_tallies_by_kind_and_verdict_in_process_name_order() -> None:
    runs = [
        run(1, "inspection", "completed"),
        run(2, "inspection", "completed", ("host web1 could not be inspected",)),
        run(3, "backup", "failed"),
        run(4, "inspection", "running"),
        run(5, "backup", "cancelled"),
    ]
    backup, inspection = run_tallies(runs)
    assert (backup.process, backup.failed, backup.cancelled, backup.total) == (
        "Backup-restore verification",
        (3,),
        (5,),
        2,
    )
    assert (inspection.completed, inspection.with_failures, inspection.unfinished) == (
        (1,),
        (2,),
        (4,),
    )
    assert inspection.all == (1, 2, 4)
    assert run_tallies([]) == []


# --- plans ----------------------------------------------------------------------------------


def test_due_runs_of_the_period_in_local_time() -> None:
    # February 2027 in Berlin: [2027-01-31 23:00, 2027-02-28 23:00) UTC.
    start, end = datetime(2027, 1, 31, 23, tzinfo=UTC), datetime(2027, 2, 28, 23, tzinfo=UTC)
    due = [
        PlannedRun(datetime(2027, 1, 31, 23, 30, tzinfo=UTC), "Health inspection", "monthly"),
        PlannedRun(datetime(2027, 2, 28, 23, 0, tzinfo=UTC), "Health inspection", "monthly"),
        PlannedRun(datetime(2027, 1, 31, 22, 59, tzinfo=UTC), "Health inspection", "monthly"),
    ]
    (only,) = due_in(due, start, end, BERLIN)
    assert only.at == datetime(2027, 2, 1, 0, 30, tzinfo=BERLIN)
    assert only.at.tzinfo is BERLIN


def test_plan_in_local_time_and_time_order() -> None:
    later = PlannedRun(datetime(2027, 3, 8, 1, 30, tzinfo=UTC), "Health inspection", "monthly")
    sooner = PlannedRun(datetime(2027, 3, 7, 1, 30, tzinfo=UTC), "Backup", "weekly")
    same = PlannedRun(datetime(2027, 3, 7, 1, 30, tzinfo=UTC), "Alpha", "weekly")
    plan = plan_in_zone(PeriodPlan(runs=(later, sooner, same), note="n"), BERLIN)
    assert [(p.process, format_dt(p.at)) for p in plan.runs] == [
        ("Alpha", "2027-03-07 02:30 CET"),
        ("Backup", "2027-03-07 02:30 CET"),
        ("Health inspection", "2027-03-08 02:30 CET"),
    ]
    assert plan.note == "n"
    assert plan_in_zone(PeriodPlan(), BERLIN) == PeriodPlan()


# --- findings ---------------------------------------------------------------------------------


def test_tallies_by_severity_list_every_severity_then_unknown_ones() -> None:
    opened = [finding(1, "major", "web1"), finding(2, "weird", "web1")]
    resolved = [finding(3, "critical", None, check=BACKUP_CHECK)]
    still = [finding(1, "major", "web1")]
    tallies = severity_tallies(opened, resolved, still)
    assert [t.severity for t in tallies] == [*SEVERITIES, "weird"]
    by = {t.severity: (t.opened, t.resolved, t.open_at_end) for t in tallies}
    assert by["major"] == (1, 0, 1) and by["critical"] == (0, 1, 0) and by["info"] == (0, 0, 0)


def test_tallies_by_host_name_backups_by_system() -> None:
    opened = [finding(1, "major", "web1"), finding(2, "critical", None, check=BACKUP_CHECK)]
    tallies = host_tallies(opened, [], opened[:1])
    assert [(t.host, t.opened, t.open_at_end) for t in tallies] == [
        ("backups of erp-db", 1, 0),
        ("web1", 1, 1),
    ]


def test_findings_are_listed_worst_first() -> None:
    rows = [
        finding(1, "minor", "a"),
        finding(2, "critical", "z", age_days=1),
        finding(3, "critical", "b", age_days=9),
    ]
    assert [r.id for r in sorted(rows, key=by_severity_then_host)] == [3, 2, 1]
    # Open at the end: worst, then oldest first.
    assert [r.id for r in sorted(rows, key=open_order)] == [3, 2, 1]
    rows.append(finding(4, "critical", "a", age_days=0))
    assert [r.id for r in sorted(rows, key=open_order)] == [3, 2, 4, 1]


# --- inspection rows --------------------------------------------------------------------------


def test_measurement_row_from_a_stored_measurement() -> None:
    row = measurement_row({"check": "disk", "subject": None, "value": 97, "severity": "major"})
    assert (row.check, row.subject, row.value, row.severity, row.evidence) == (
        "disk",
        "",
        "97",
        "major",
        "",
    )
    assert measurement_row({"check": "cpu"}).severity is None


def test_findings_grouped_by_severity_worst_first_and_counted() -> None:
    def f(host: str, severity: str) -> InspectionFinding:
        return InspectionFinding(host, "disk", "/", severity, "m", "", "", T, T, "new")

    groups = group_by_severity([f("b", "minor"), f("b", "critical"), f("a", "critical")])
    assert [(g.severity, [r.host for r in g.findings]) for g in groups] == [
        ("critical", ["a", "b"]),
        ("minor", ["b"]),
    ]
    counts = severity_counts([f("a", "major"), {"severity": "ok"}, {"severity": "major"}])
    assert counts == {"critical": 0, "major": 2, "minor": 0, "info": 0}
