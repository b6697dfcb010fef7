"""Service reports: periods, gathering a contract's records of a period, rendering, saving."""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from tests.service_report_fixtures import (
    BLACKOUTS,
    CADENCES,
    FEBRUARY,
    TRUNCATED,
    UNREACHABLE,
    Planted,
    acme,
    plant_bad_month,
)
from upkeep.domain.periods import local_midnight, next_period, period_bounds, period_label
from upkeep.domain.service_figures import NO_END, missed_runs
from upkeep.domain.service_report import PeriodPlan, PlannedRun, RunRow, ServiceReport
from upkeep.models import (
    Approval,
    ApprovalEvent,
    Contract,
    Customer,
    Finding,
    FindingStatus,
    Host,
    InspectionRun,
    RunStatus,
)
from upkeep.settings import TEMPLATES_DIR
from upkeep.tasks.records import RecordNotFound
from upkeep.tasks.service_plan import plan_for_period
from upkeep.tasks.service_report import build_service_report
from upkeep.tasks.service_report_render import (
    NO_BACKUPS,
    NO_PLAN,
    render_service_report_email,
    render_service_report_html,
    render_service_report_markdown,
    save_service_report,
    service_report_path,
)

TEMPLATES = TEMPLATES_DIR
XSS = "<script>alert(1)</script>"
NOVEMBER = (date(2026, 11, 1), date(2026, 12, 1))
# November 2026 in Europe/Berlin (CET, UTC+1) is [2026-10-31 23:00, 2026-11-30 23:00) UTC.
END_UTC = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)


def utc(month: int, day: int, hour: int = 8, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# --- periods --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (date(2026, 1, 15), (date(2025, 12, 1), date(2026, 1, 1))),
        (date(2026, 1, 1), (date(2025, 12, 1), date(2026, 1, 1))),
        (date(2026, 12, 1), (date(2026, 11, 1), date(2026, 12, 1))),
        (date(2026, 3, 31), (date(2026, 2, 1), date(2026, 3, 1))),
    ],
)
def test_period_bounds_month_is_the_previous_month(reference: date, expected: tuple) -> None:
    assert period_bounds("month", reference) == expected


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (date(2026, 1, 10), (date(2025, 10, 1), date(2026, 1, 1))),
        (date(2026, 4, 1), (date(2026, 1, 1), date(2026, 4, 1))),
        (date(2026, 6, 30), (date(2026, 1, 1), date(2026, 4, 1))),
        (date(2026, 12, 31), (date(2026, 7, 1), date(2026, 10, 1))),
    ],
)
def test_period_bounds_quarter_is_the_previous_quarter(reference: date, expected: tuple) -> None:
    assert period_bounds("quarter", reference) == expected


def test_period_bounds_year_is_the_previous_year() -> None:
    assert period_bounds("year", date(2026, 1, 1)) == (date(2025, 1, 1), date(2026, 1, 1))
    assert period_bounds("year", date(2026, 12, 31)) == (date(2025, 1, 1), date(2026, 1, 1))


def test_period_bounds_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown period 'week'"):
        period_bounds("week", date(2026, 1, 1))  # type: ignore[arg-type]


def test_period_labels_and_next_period() -> None:
    assert period_label("month", date(2026, 11, 1)) == "2026-11"
    assert period_label("quarter", date(2026, 10, 1)) == "2026-Q4"
    assert period_label("quarter", date(2026, 1, 1)) == "2026-Q1"
    assert period_label("year", date(2026, 1, 1)) == "2026"
    assert next_period("month", date(2026, 12, 1)) == (date(2026, 12, 1), date(2027, 1, 1))
    assert next_period("quarter", date(2026, 10, 1)) == (date(2026, 10, 1), date(2027, 1, 1))
    assert next_period("year", date(2026, 1, 1)) == (date(2026, 1, 1), date(2027, 1, 1))


# --- the next period's plan ---------------------------------------------------------------

BERLIN = "Europe/Berlin"


def q4_2026() -> dict:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(BERLIN)
    return {
        "timezone": BERLIN,
        "start": local_midnight(date(2026, 10, 1), zone),
        "end": local_midnight(date(2027, 1, 1), zone),
    }


def test_no_cadences_plan_nothing_and_say_nothing() -> None:
    assert plan_for_period(cadences={}, **q4_2026()) == PeriodPlan()


def test_plan_respects_blackouts_names_processes_and_says_cadences_in_words() -> None:
    plan = plan_for_period(
        cadences={
            "inspection": "quarterly, first Tuesday, 02:00",
            "backup_verification": "monthly, day 24, 03:30",
            "recheck": {"cron": "0 1 * * 6"},
            "drill": {"rrule": "FREQ=YEARLY;BYMONTH=11;BYDAY=+2TU;BYHOUR=4"},
            "patch_advisory": "monthly, day 31, 03:30",
        },
        blackouts=[{"from": "2026-12-24", "to": "2026-12-26", "reason": "Christmas"}],
        **q4_2026(),
    )
    assert plan.note == "Not planned: Patch advisory: its cadence cannot be read."
    backups = [p for p in plan.runs if p.process == "Backup-restore verification"]
    assert [p.at.isoformat() for p in backups] == [
        "2026-10-24T03:30:00+02:00",
        "2026-11-24T03:30:00+01:00",
        "2026-12-27T03:30:00+01:00",
    ]
    assert backups[0].cadence == "monthly, on day 24 at 03:30"
    assert backups[2].notes == ("moved from 2026-12-24 03:30: blackout day (Christmas)",)
    (inspection,) = [p for p in plan.runs if p.process == "Health inspection"]
    assert inspection.at.isoformat() == "2026-10-06T02:00:00+02:00"
    assert inspection.cadence == "quarterly, first Tuesday at 02:00"
    saturdays = [p for p in plan.runs if p.process == "Re-check of open findings"]
    assert len(saturdays) == 13 and saturdays[0].cadence == "every Saturday at 01:00"
    # Boxing Day is a Saturday: the re-check moves to the 27th, where nothing else of its kind is.
    assert [p.notes for p in saturdays if p.notes] == [
        ("moved from 2026-12-26 01:00: blackout day (Christmas)",)
    ]
    (drill,) = [p for p in plan.runs if p.process == "Disaster-recovery drill"]
    assert drill.cadence == "yearly, second Tuesday of November at 04:00"
    assert plan.blackouts == ("2026-12-24 – 2026-12-26: Christmas",)
    assert plan.policy is not None and "next allowed day" in plan.policy
    for run in plan.runs:
        assert "FREQ" not in run.cadence and "* *" not in run.cadence
        assert "_" not in run.process


def test_plan_under_the_skip_policy_keeps_the_skipped_run_and_says_why() -> None:
    plan = plan_for_period(
        cadences={"backup_verification": "monthly, day 24, 03:30"},
        blackouts=[{"from": "2026-12-24", "reason": "Christmas Eve"}, "2027-02-01"],
        policy="skip",
        **q4_2026(),
    )
    assert [(p.at.isoformat(), p.skipped, p.notes) for p in plan.runs][-1] == (
        "2026-12-24T03:30:00+01:00",
        True,
        ("skipped: blackout day (Christmas Eve)",),
    )
    assert plan.blackouts == ("2026-12-24: Christmas Eve",)  # February is not in Q4
    assert plan.policy == "A run that falls on a blackout day is skipped."


def test_plan_says_when_daylight_saving_moves_a_run() -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(BERLIN)
    plan = plan_for_period(
        cadences={"backup_verification": {"cron": "30 2 * * 0"}},
        timezone=BERLIN,
        start=local_midnight(date(2027, 3, 1), zone),
        end=local_midnight(date(2027, 4, 1), zone),
    )
    last = plan.runs[-1]
    assert last.at.isoformat() == "2027-03-28T01:30:00+01:00"
    assert last.cadence == "every Sunday at 02:30"
    assert last.notes == (
        "at 01:30 instead of 02:30: 02:30 does not exist on 2027-03-28, when the clocks go forward",
    )
    assert all(not p.notes for p in plan.runs[:-1])


def test_plan_names_what_it_cannot_plan_without_the_raw_expression() -> None:
    plan = plan_for_period(
        cadences={"inspection": {"cron": "0 25 * * *"}, "drill": {"cron": "0 0 30 2 *"}},
        not_scheduled=["patch_advisory"],
        **q4_2026(),
    )
    assert plan.runs == ()
    assert plan.note == (
        "Not planned: Disaster-recovery drill: no run time can be computed from its cadence; "
        "Health inspection: its cadence cannot be read; Patch advisory: not scheduled by "
        "upkeep yet."
    )


# --- records --------------------------------------------------------------------------------


@dataclass
class Seeded:
    edge_run: int
    failed_run: int


def _run(s: Session, contract_id: int, kind: str, status: RunStatus, at: datetime) -> int:
    run = InspectionRun(
        contract_id=contract_id,
        kind=kind,
        status=status,
        started_at=at,
        finished_at=at + timedelta(minutes=20),
        requested_by="tester",
    )
    s.add(run)
    s.flush()
    assert run.id is not None
    return run.id


def _finding(
    s: Session,
    contract_id: int,
    host: Host,
    run_id: int,
    check: str,
    severity: str,
    first_seen: datetime,
    resolved: datetime | None = None,
    message: str = "something is wrong",
    recommendation: str = "",
) -> None:
    assert host.id is not None
    s.add(
        Finding(
            contract_id=contract_id,
            host_id=host.id,
            run_id=run_id,
            last_seen_run_id=run_id,
            check=check,
            severity=severity,
            message=message,
            recommendation=recommendation,
            status=FindingStatus.RESOLVED if resolved else FindingStatus.OPEN,
            first_seen_at=first_seen,
            last_seen_at=first_seen,
            resolved_at=resolved,
        )
    )


def _gate(
    s: Session,
    contract_id: int,
    requested: datetime,
    decision: str | None,
    waited: timedelta | None = None,
    gate: str = "inspection-plan",
    escalated: bool = False,
) -> None:
    decided = requested + waited if waited is not None else None
    approver = "Alice Owner" if decision in ("approve", "reject") else None
    row = Approval(
        flow_run_id=f"fr-{requested.isoformat()}",
        contract_id=contract_id,
        gate=gate,
        subject=f"{gate} of {requested:%Y-%m-%d}",
        requested_at=requested,
        decided_at=decided,
        decision=decision,
        approver=approver,
    )
    s.add(row)
    s.flush()
    assert row.id is not None
    s.add(ApprovalEvent(approval_id=row.id, kind="opened", at=requested))
    if escalated:
        s.add(
            ApprovalEvent(approval_id=row.id, kind="escalated", at=requested + timedelta(hours=4))
        )
    if decided is not None and approver:
        s.add(ApprovalEvent(approval_id=row.id, kind="approved", actor=approver, at=decided))
        s.add(ApprovalEvent(approval_id=row.id, kind="decided", actor=approver, at=decided))
    elif decision == "expired" and decided is not None:
        s.add(ApprovalEvent(approval_id=row.id, kind="expired", at=decided))


def seed(engine: sa.Engine) -> Seeded:
    """ACME (Europe/Berlin) with records inside November 2026 and around it."""
    with Session(engine) as s:
        contract = acme(
            s, customer_name="ACME & Söhne <GmbH>", report_recipients=["it@acme.example"]
        )
        cid = contract.id
        assert cid is not None
        web, db = (
            Host(contract_id=cid, name="web1", address="10.0.0.1"),
            Host(contract_id=cid, name="db1", address="10.0.0.2"),
        )
        s.add_all([web, db])
        s.flush()

        # 23:30 UTC on 31 October is 00:30 on 1 November in Berlin: November's.
        edge = _run(s, cid, "inspection", RunStatus.COMPLETED, utc(10, 31, 23, 30))
        failed = _run(s, cid, "recheck", RunStatus.FAILED, utc(11, 15, 10))
        _run(s, cid, "inspection", RunStatus.COMPLETED, utc(11, 20))
        old = _run(s, cid, "inspection", RunStatus.COMPLETED, utc(10, 31, 22, 30))  # October
        _run(s, cid, "demo", RunStatus.COMPLETED, END_UTC)  # 1 December, 00:00 in Berlin

        _finding(s, cid, web, old, "disk", "major", utc(10, 10), recommendation="grow /var")
        _finding(
            s,
            cid,
            web,
            failed,
            "syslog",
            "critical",
            utc(11, 15),
            message=f"kernel says {XSS} | oops\nnext line",
            recommendation="replace the disk",
        )
        _finding(s, cid, db, edge, "memory", "minor", utc(11, 2), resolved=utc(11, 20))
        _finding(s, cid, db, old, "ntp", "info", utc(9, 1), resolved=utc(11, 5))
        _finding(s, cid, db, edge, "cert", "major", utc(11, 10), resolved=utc(12, 3))
        _finding(s, cid, web, old, "swap", "minor", utc(12, 2))
        _finding(s, cid, web, old, "old", "minor", utc(8, 1), resolved=utc(10, 1))

        _gate(s, cid, utc(11, 3), "approve", timedelta(hours=2), escalated=True)
        _gate(s, cid, utc(11, 10), "expired", timedelta(hours=72), escalated=True)
        _gate(s, cid, utc(12, 2), "approve", timedelta(minutes=10), escalated=True)  # after
        _gate(s, cid, utc(10, 20), "approve", timedelta(hours=9))  # before
        _gate(s, cid, utc(11, 12), "resubmit", timedelta(hours=1), gate="inspection-plan-revision")
        s.commit()
        return Seeded(edge_run=edge, failed_run=failed)


def build(engine: sa.Engine, **kwargs) -> ServiceReport:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return build_service_report(
            session=s,
            contract_code="ACME",
            kind="month",
            start=NOVEMBER[0],
            end=NOVEMBER[1],
            generated_at=utc(12, 1, 6),
            **kwargs,
        )


def test_build_counts_runs_of_the_period_in_the_contracts_timezone(engine: sa.Engine) -> None:
    seeded = seed(engine)
    report = build(engine)
    assert report.label == "2026-11" and report.period_text == "2026-11-01 – 2026-11-30"
    assert [r.id for r in report.runs][0] == seeded.edge_run
    assert report.runs[0].started_at.isoformat() == "2026-11-01T00:30:00+01:00"
    assert report.runs_total == 3 and report.runs_failed == 1
    assert [(t.process, len(t.completed), t.failed, t.total) for t in report.run_tallies] == [
        ("Health inspection", 2, (), 2),
        ("Re-check of open findings", 0, (seeded.failed_run,), 1),
    ]
    assert [r.id for r in report.runs_not_done] == [seeded.failed_run]


def test_build_counts_findings_opened_resolved_and_open_at_the_end(engine: sa.Engine) -> None:
    seed(engine)
    report = build(engine)
    assert [(f.host, f.check) for f in report.opened] == [
        ("web1", "syslog"),
        ("db1", "cert"),
        ("db1", "memory"),
    ]
    assert [(f.host, f.check) for f in report.resolved] == [("db1", "memory"), ("db1", "ntp")]
    # Worst first, then oldest; the cert was resolved after the period, so it was open then.
    assert [(f.check, f.age_days) for f in report.open_at_end] == [
        ("syslog", 15),
        ("disk", 51),
        ("cert", 20),
    ]
    assert report.open_at_end[1].age == END_UTC - utc(10, 10)
    assert [(t.severity, t.opened, t.resolved, t.open_at_end) for t in report.by_severity] == [
        ("critical", 1, 0, 1),
        ("major", 1, 0, 2),
        ("minor", 1, 1, 0),
        ("info", 0, 1, 0),
    ]
    assert [(t.host, t.opened, t.resolved, t.open_at_end) for t in report.by_host] == [
        ("db1", 2, 2, 1),
        ("web1", 1, 0, 2),
    ]
    assert [(f.check, f.recommendation) for f in report.advice] == [
        ("syslog", "replace the disk"),
        ("disk", "grow /var"),
    ]
    assert report.backups == ()


def test_build_limits_approvals_to_the_period(engine: sa.Engine) -> None:
    seed(engine)
    a = build(engine).approvals
    assert (a.gates, a.escalations, a.expiries, a.pending) == (2, 2, 1, 0)
    (alice,) = a.times
    assert (alice.approver, alice.decisions) == ("Alice Owner", 1)
    assert alice.median == alice.p90 == alice.longest == timedelta(hours=2)
    assert [(g.decision, g.escalated) for g in a.rows] == [("approve", True), ("expired", True)]
    assert a.rows[0].requested_at.isoformat() == "2026-11-03T09:00:00+01:00"


def _planned(at: datetime, process: str, cadence: str = "monthly") -> PlannedRun:
    return PlannedRun(at=at, process=process, cadence=cadence)


def test_build_takes_the_plan_as_given_in_local_time(engine: sa.Engine) -> None:
    seed(engine)
    plan = PeriodPlan(
        runs=(
            _planned(utc(12, 8, 1), "Health inspection"),
            _planned(utc(12, 2, 1), "Backup-restore verification"),
        )
    )
    report = build(engine, plan=plan)
    assert (report.next_start, report.next_end) == (date(2026, 12, 1), date(2027, 1, 1))
    assert [(p.process, p.at.isoformat()) for p in report.planned] == [
        ("Backup-restore verification", "2026-12-02T02:00:00+01:00"),
        ("Health inspection", "2026-12-08T02:00:00+01:00"),
    ]


def test_build_refuses_an_unknown_contract_and_an_empty_period(engine: sa.Engine) -> None:
    seed(engine)
    with Session(engine) as s:
        with pytest.raises(RecordNotFound):
            build_service_report(
                session=s, contract_code="NOPE", kind="month", start=NOVEMBER[0], end=NOVEMBER[1]
            )
        with pytest.raises(ValueError, match="empty period"):
            build_service_report(
                session=s, contract_code="ACME", kind="month", start=NOVEMBER[1], end=NOVEMBER[0]
            )


def test_an_empty_contract_still_has_every_section(engine: sa.Engine) -> None:
    with Session(engine) as s:
        customer = Customer(code="quiet", name="Quiet Ltd")
        s.add(customer)
        s.flush()
        assert customer.id is not None
        s.add(Contract(customer_id=customer.id, code="ACME", name="quiet", timezone="UTC"))
        s.commit()
    report = build(engine)
    html = render_service_report_html(report, TEMPLATES)
    for section in ("runs", "findings", "advice", "backups", "approvals", "plan"):
        assert f'<section id="{section}">' in html
    assert "No runs were recorded in this period." in html
    assert f"{NO_BACKUPS.capitalize()} in this period." in html
    assert NO_PLAN in html
    assert NO_PLAN in render_service_report_markdown(report)


# --- rendering ------------------------------------------------------------------------------


def test_html_is_self_contained_and_escapes_host_output(engine: sa.Engine) -> None:
    seed(engine)
    report = build(
        engine, plan=PeriodPlan(runs=(_planned(utc(12, 8, 1), "Health <b>inspection</b>"),))
    )
    html = render_service_report_html(report, TEMPLATES, prefect_ui_url="http://ui:4200")
    assert XSS not in html
    assert "kernel says &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "ACME &amp; Söhne &lt;GmbH&gt;" in html
    assert "Health &lt;b&gt;inspection&lt;/b&gt;" in html
    assert NO_BACKUPS.capitalize() in html
    assert "2026-11-01 00:30 CET" in html  # the edge run, in Berlin time
    assert not re.search(r"""(src|href)=["']https?://""", html)  # no external assets
    assert "<style>" in html


def test_markdown_escapes_pipes_and_newlines(engine: sa.Engine) -> None:
    seed(engine)
    md = render_service_report_markdown(build(engine), Path("/srv/reports/r.html"))
    row = next(line for line in md.splitlines() if "kernel says" in line)
    assert "\\| oops next line" in row
    assert "<script>" not in row  # escaped (the form is tasks.markup's)
    assert row.count("|") - row.count("\\|") == 8  # seven cells: nothing broke out of the table
    assert "[Open the full report](file:///srv/reports/r.html)" in md
    assert "| Alice Owner | 1 | 2h 00m | 2h 00m | 2h 00m |" in md


def test_email_has_one_line_subject_and_names_the_attachment(engine: sa.Engine) -> None:
    seed(engine)
    report = build(engine)
    subject, text, html = render_service_report_email(
        report, Path("/r/service-report-ACME-2026-11.html"), TEMPLATES
    )
    assert "\n" not in subject
    assert subject.startswith("[upkeep] Monthly service report 2026-11 ACME")
    assert "3 run(s) (1 not clean), 0 failed backup verification(s), 3 finding(s) opened" in subject
    assert "3 finding(s) opened, 2 resolved, 3 open" in subject
    assert "attached (service-report-ACME-2026-11.html)" in text
    assert "Backups verified:  no backup verification recorded" in text
    assert "Re-check of open findings" in text and ": failed" in text  # what was not done
    assert "replace the disk" in text and "replace the disk" in html
    assert XSS not in html


# --- saving ---------------------------------------------------------------------------------


def test_save_writes_atomically_under_contract_and_year(tmp_path: Path) -> None:
    path = save_service_report(
        "<html>1</html>", report_dir=tmp_path, contract_code="ACME", label="2026-Q4"
    )
    assert path == tmp_path / "ACME" / "2026" / "service-report-ACME-2026-Q4.html"
    assert path == service_report_path(report_dir=tmp_path, contract_code="ACME", label="2026-Q4")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    again = save_service_report(
        "<html>2</html>", report_dir=tmp_path, contract_code="ACME", label="2026-Q4"
    )
    assert again == path and path.read_text() == "<html>2</html>"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_save_refuses_a_contract_code_that_is_not_a_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        save_service_report("x", report_dir=tmp_path, contract_code="..", label="2026")
    path = save_service_report("x", report_dir=tmp_path, contract_code="../evil", label="2026")
    assert path.resolve().is_relative_to(tmp_path.resolve())


# --- a bad month, written as the flows write it -----------------------------------------------


def bad_month(engine: sa.Engine) -> tuple[Planted, ServiceReport]:
    from zoneinfo import ZoneInfo

    planted = plant_bad_month(engine)
    zone = ZoneInfo(BERLIN)
    plan = plan_for_period(
        cadences=CADENCES,
        timezone=BERLIN,
        start=local_midnight(date(2027, 3, 1), zone),
        end=local_midnight(date(2027, 4, 1), zone),
        blackouts=BLACKOUTS,
    )
    due = plan_for_period(
        cadences=CADENCES,
        timezone=BERLIN,
        start=local_midnight(FEBRUARY[0], zone),
        end=local_midnight(FEBRUARY[1], zone),
        blackouts=BLACKOUTS,
    )
    with Session(engine) as s:
        report = build_service_report(
            session=s,
            contract_code="ACME",
            kind="month",
            start=FEBRUARY[0],
            end=FEBRUARY[1],
            plan=plan,
            due=due.runs,
            generated_at=datetime(2027, 3, 3, 6, tzinfo=UTC),
        )
    return planted, report


def test_planned_runs_that_never_ran_are_reported_missed(engine: sa.Engine) -> None:
    _, report = bad_month(engine)
    # The inspection of 2 February and the backup test of 7 February ran; the other Sundays'
    # backup tests have no run at all.
    assert [p.label for p in report.missed] == [
        f"Backup-restore verification planned for 2027-02-{day} 02:30 CET" for day in (14, 21, 28)
    ]
    figures = {f.label: f for f in report.figures}
    assert figures["planned runs with no run recorded"].count == 3
    html = render_service_report_html(report, TEMPLATES)
    assert "Backup-restore verification planned for 2027-02-14 02:30 CET" in html
    assert "Planned but not run (3)" in html
    assert len(report.due) == 5  # inspection on the 2nd, backup tests on every Sunday


def _row(run_id: int, kind: str, at: datetime) -> RunRow:
    return RunRow(run_id, kind, "completed", at, at, None, None, None)


def test_missed_runs_match_each_run_once_within_its_window() -> None:
    slot = utc(11, 10, 1)
    due = [
        PlannedRun(slot, "Health inspection", "weekly", key="inspection"),
        PlannedRun(slot + timedelta(days=7), "Health inspection", "weekly", key="inspection"),
        PlannedRun(slot, "Backup", "weekly", key="backup_verification", skipped=True),
        PlannedRun(slot, "Service report", "monthly", key="service_report"),
        PlannedRun(utc(12, 30), "Health inspection", "weekly", key="inspection"),  # future
    ]
    late = _row(1, "inspection", slot + timedelta(hours=5))
    # One run late by five hours counts for the first slot, not for the second as well.
    missed = missed_runs(due, [late], now=utc(12, 1))
    assert [p.at for p in missed] == [slot + timedelta(days=7)]
    # A run of another kind, or one far from the slot, does not count.
    other = [_row(2, "recheck", slot), _row(3, "inspection", slot + timedelta(days=2))]
    assert len(missed_runs(due, other, now=utc(12, 1))) == 2
    assert (
        missed_runs(due, [late, _row(4, "inspection", slot + timedelta(days=7))], utc(12, 1)) == []
    )


def test_a_run_whose_backup_failed_did_not_complete_cleanly(engine: sa.Engine) -> None:
    p, report = bad_month(engine)
    verdicts = {r.id: (r.verdict, r.problems) for r in report.runs}
    assert verdicts[p.backup_run] == (
        "completed with failures",
        (
            f"backup of erp-db failed verification {p.failed_verification}: the backup is at "
            "fault (truncated)",
        ),
    )
    assert verdicts[p.inspection_run] == (
        "completed with failures",
        (f"host db1 could not be inspected: {UNREACHABLE}",),
    )
    assert verdicts[p.failed_run][0] == "failed"
    assert verdicts[p.crashed_run] == ("not finished", (NO_END,))
    assert [r.id for r in report.runs_not_done] == [
        p.inspection_run,
        p.backup_run,
        p.failed_run,
        p.crashed_run,
    ]
    tallies = {t.process: t for t in report.run_tallies}
    assert tallies["Backup-restore verification"].with_failures == (p.backup_run,)
    assert tallies["Ad-hoc sweep"].unfinished == (p.crashed_run,)
    assert tallies["Re-check of open findings"].failed == (p.failed_run,)


def test_backup_verifications_and_backup_findings_are_read_from_the_records(
    engine: sa.Engine,
) -> None:
    p, report = bad_month(engine)
    assert [(b.id, b.system, b.good, b.run_id) for b in report.backups] == [
        (p.failed_verification, "erp-db", False, p.backup_run),
        (p.good_verification, "fileserver", True, p.backup_run),
    ]
    assert report.backups_failed[0].verdict == "FAILED: the backup is at fault (truncated)"
    assert report.unverified_sources == ("mail",)
    backup = next(f for f in report.opened if f.id == p.backup_finding)
    assert (backup.host, backup.where, backup.severity) == (None, "backups of erp-db", "critical")
    assert backup.run_id == p.backup_run
    assert [(f.where, f.check) for f in report.opened] == [
        ("backups of erp-db", "backup"),
        ("db1", "reachability"),
        ("web1", "disk"),
    ]
    assert {t.host: t.open_at_end for t in report.by_host} == {
        "backups of erp-db": 1,
        "db1": 1,
        "web1": 1,
    }
    assert [f.id for f in report.advice][0] in (p.backup_finding, p.disk_finding)


def test_every_figure_lists_the_records_it_counts(engine: sa.Engine) -> None:
    p, report = bad_month(engine)
    figures = {f.label: f for f in report.figures}
    assert figures["runs"].refs == tuple(
        f"run {i}" for i in (p.inspection_run, p.backup_run, p.failed_run, p.crashed_run)
    )
    assert figures["runs not completed cleanly"].count == 4
    assert figures["failed backup verifications"].refs == (f"verification {p.failed_verification}",)
    assert figures["backup verifications"].count == 2
    assert f"finding {p.backup_finding}" in figures["findings opened"].refs
    assert f"finding {p.disk_finding}" in figures["open at the end"].refs
    assert figures["approval gates"].refs == (f"gate {p.gate}",)
    for figure in report.figures:
        assert figure.count == len(figure.refs)


def test_every_planted_failure_is_in_the_page_the_artifact_and_the_mail(engine: sa.Engine) -> None:
    p, report = bad_month(engine)
    html = render_service_report_html(report, TEMPLATES)
    md = render_service_report_markdown(report)
    _, text, mail_html = render_service_report_email(report, Path("/r/x.html"), TEMPLATES)
    for page in (html, md, text):
        assert f"backup of erp-db failed verification {p.failed_verification}" in page
        assert "the backup is at fault (truncated)" in page
        assert UNREACHABLE in page
        assert "Every run of the period completed" not in page
        assert NO_BACKUPS not in page and NO_BACKUPS.capitalize() not in page
    assert "completed with failures" in mail_html and "truncated" in mail_html
    # The page: the run's outcome, the verification, the backup finding, the dead sweep.
    assert f"run {p.backup_run}" in html and f"verification {p.failed_verification}" in html
    assert "backups of erp-db" in html and "/var is 97% full" in html
    assert "not finished" in html and NO_END in html
    assert "Re-check of open findings" in html and "Ad-hoc sweep" in html
    assert f"<td>{p.backup_run}</td><td>Backup-restore verification</td>" in html
    assert "Not verified in this period:</strong> mail" in html
    assert TRUNCATED in html
    # The plan: by name, in words, the blackout and the spring-forward day said.
    assert "Health inspection" in html and "monthly, first Tuesday at 02:00" in html
    assert "every Sunday at 02:30" in html
    assert "2027-03-08 02:30 CET" in html
    assert "moved from 2027-03-07 02:30: blackout day (Trade fair)" in html
    assert "2027-03-07: Trade fair" in html
    assert "2027-03-28 01:30 CET" in html
    assert "02:30 does not exist on 2027-03-28, when the clocks go forward" in html
    for raw in (
        "30 2 * * 0",
        "FREQ=",
        "backup_verification",
        "<td>inspection</td>",
    ):
        assert raw not in html and raw not in md


def test_a_run_waiting_for_approval_says_so_instead_of_having_no_end(engine: sa.Engine) -> None:
    from sqlmodel import select

    from upkeep.tasks.records import start_run

    seed(engine)
    with Session(engine) as s:
        contract = s.exec(select(Contract)).one()
        run = start_run(session=s, contract=contract, kind="inspection", flow_run_id="fr-parent")
        run.started_at = utc(11, 25, 8)
        gate = Approval(
            flow_run_id="fr-gate-subflow",
            parent_flow_run_id="fr-parent",
            contract_id=contract.id,
            gate="inspection-plan",
            subject="plan",
            requested_at=utc(11, 25, 8, 5),
        )
        s.add_all([run, gate])
        s.commit()
        run_id, gate_id = run.id, gate.id
    row = next(r for r in build(engine).runs if r.id == run_id)
    assert row.verdict == "not finished"
    assert row.problems == (
        f"waiting for approval (gate {gate_id}, inspection-plan) since 2026-11-25 09:05 CET",
    )
