"""The annual service plan as iCalendar text and as printable HTML."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from upkeep.domain.cadence import Blackout, parse_cadence, planned_runs
from upkeep.domain.calendar import (
    AnnualPlan,
    CalendarEvent,
    annual_plan_events,
    default_duration,
    ics_calendar,
    plan_items,
)
from upkeep.settings import TEMPLATES_DIR
from upkeep.tasks.render import render_annual_plan_html

TEMPLATES = TEMPLATES_DIR
TZ = "Europe/Berlin"
BERLIN = ZoneInfo(TZ)
STAMP = datetime(2026, 11, 2, 8, 15, tzinfo=UTC)


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


# ---------------------------------------------------------------------------------------------
# A minimal RFC 5545 reader, to check what was written


def unfold(text: str) -> list[str]:
    return text.replace("\r\n ", "").split("\r\n")[:-1]


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


def parse_ics(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The calendar's own properties and each VEVENT's properties (values unescaped)."""
    calendar: dict[str, str] = {}
    events: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in unfold(text):
        name, _, value = line.partition(":")
        if line == "BEGIN:VEVENT":
            current = {}
        elif line == "END:VEVENT":
            assert current is not None
            events.append(current)
            current = None
        elif current is not None:
            current[name] = unescape(value)
        elif name not in ("BEGIN", "END"):
            calendar[name] = unescape(value)
    return calendar, events


def event(**overrides: object) -> CalendarEvent:
    fields: dict[str, object] = {
        "start": berlin(2027, 1, 5, 2, 0),
        "duration": timedelta(hours=2),
        "summary": "Quarterly health inspection – ACME-01",
        "description": "Contract ACME-01",
        "category": "inspection",
        "uid_seed": "ACME-01|inspection|20270105T010000Z",
    }
    fields.update(overrides)
    return CalendarEvent(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# iCalendar


def test_ics_structure() -> None:
    events = [
        event(),
        event(
            start=berlin(2027, 7, 6, 2, 0),
            uid_seed="ACME-01|inspection|20270706T000000Z",
            summary="Backup test",
            category="backup-test",
            duration=timedelta(hours=1),
        ),
    ]
    text = ics_calendar(events, calendar_name="ACME service plan 2027", dtstamp=STAMP)

    assert text.startswith("BEGIN:VCALENDAR\r\n")
    assert text.endswith("END:VCALENDAR\r\n")
    assert "\n" not in text.replace("\r\n", "")  # every line ends with CRLF
    assert text.count("BEGIN:VEVENT\r\n") == text.count("END:VEVENT\r\n") == 2
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))

    calendar, parsed = parse_ics(text)
    assert calendar["VERSION"] == "2.0"
    assert calendar["PRODID"] == "-//upkeep//annual service plan//EN"
    assert calendar["X-WR-CALNAME"] == "ACME service plan 2027"
    first, second = parsed
    # 02:00 CET is 01:00 UTC in January, 02:00 CEST is 00:00 UTC in July.
    assert first["DTSTART"] == "20270105T010000Z"
    assert first["DTEND"] == "20270105T030000Z"
    assert second["DTSTART"] == "20270706T000000Z"
    assert second["DTEND"] == "20270706T010000Z"
    assert first["DTSTAMP"] == second["DTSTAMP"] == "20261102T081500Z"
    assert first["SUMMARY"] == "Quarterly health inspection – ACME-01"
    assert first["CATEGORIES"] == "inspection"
    assert second["CATEGORIES"] == "backup-test"
    assert re.fullmatch(r"[0-9a-f]{32}@upkeep", first["UID"])
    assert first["UID"] != second["UID"]


def test_events_are_ordered_by_start() -> None:
    late = event(start=berlin(2027, 10, 5, 2, 0), uid_seed="late", summary="late")
    early = event(start=berlin(2027, 1, 5, 2, 0), uid_seed="early", summary="early")
    _, parsed = parse_ics(ics_calendar([late, early], calendar_name="x", dtstamp=STAMP))
    assert [e["SUMMARY"] for e in parsed] == ["early", "late"]


def test_uids_are_stable_across_renders() -> None:
    first = ics_calendar([event()], calendar_name="plan", dtstamp=STAMP)
    second = ics_calendar([event(summary="renamed")], calendar_name="plan")
    assert parse_ics(first)[1][0]["UID"] == parse_ics(second)[1][0]["UID"]
    assert ics_calendar([event()], calendar_name="plan", dtstamp=STAMP) == first


def test_text_values_are_escaped() -> None:
    tricky = 'Backup, restore; verify \\ "share"\nthen report\r\nand close'
    text = ics_calendar(
        [event(summary="Test; one, two", description=tricky, category="backup, test")],
        calendar_name="Plan; 2027, ACME",
        dtstamp=STAMP,
    )
    unfolded = unfold(text)
    assert "SUMMARY:Test\\; one\\, two" in unfolded
    assert (
        'DESCRIPTION:Backup\\, restore\\; verify \\\\ "share"\\nthen report\\nand close' in unfolded
    )
    assert "CATEGORIES:backup\\, test" in unfolded
    assert "X-WR-CALNAME:Plan\\; 2027\\, ACME" in unfolded
    calendar, (parsed,) = parse_ics(text)
    assert parsed["DESCRIPTION"] == tricky.replace("\r\n", "\n")
    assert parsed["SUMMARY"] == "Test; one, two"
    assert calendar["X-WR-CALNAME"] == "Plan; 2027, ACME"


def test_long_description_is_folded_at_75_octets() -> None:
    # Multi-byte characters: folding counts octets and never splits a character.
    long = "Prüfung der Sicherungen – " * 20
    text = ics_calendar([event(description=long)], calendar_name="plan", dtstamp=STAMP)
    lines = text.split("\r\n")[:-1]
    description_start = next(i for i, line in enumerate(lines) if line.startswith("DESCRIPTION:"))
    continuation = lines[description_start + 1]
    assert continuation.startswith(" ")
    assert all(len(line.encode("utf-8")) <= 75 for line in lines)
    assert len(lines[description_start].encode("utf-8")) >= 73  # filled, not split early
    _, (parsed,) = parse_ics(text)
    assert parsed["DESCRIPTION"] == long


# ---------------------------------------------------------------------------------------------
# The annual plan


def sample_plan(contract_name: str = "Managed servers") -> AnnualPlan:
    blackouts = [
        Blackout(date(2027, 1, 5), date(2027, 1, 5), "Epiphany <eve>"),
        Blackout(date(2027, 12, 24), date(2027, 12, 31), "Christmas freeze"),
    ]
    year = (berlin(2027, 1, 1), berlin(2028, 1, 1))
    inspection = planned_runs(
        parse_cadence("quarterly, first Tuesday, 02:00"), TZ, blackouts, "next_allowed_day", *year
    )
    backups = planned_runs(
        parse_cadence("monthly, last Friday, 18:00"), TZ, blackouts, "skip", *year
    )
    items = plan_items(
        inspection,
        process="inspection",
        title="Quarterly health inspection",
        cadence_text="quarterly, first Tuesday, 02:00",
    ) + plan_items(
        backups,
        process="backup-test",
        title="Monthly backup test",
        cadence_text="monthly, last Friday, 18:00",
    )
    return AnnualPlan(
        customer_name="ACME GmbH & Co. KG",
        contract_code="ACME-01",
        contract_name=contract_name,
        year=2027,
        timezone=TZ,
        items=items,
        blackouts=blackouts,
    )


def test_annual_plan_events_leave_out_skipped_runs() -> None:
    plan = sample_plan()
    events = annual_plan_events(plan)
    # 4 inspections (one moved) + 12 backup tests, of which the one on 2027-12-31 is skipped.
    assert len(events) == 4 + 11
    inspections = [e for e in events if e.category == "inspection"]
    assert [e.start for e in inspections] == [
        berlin(2027, 1, 6, 2, 0),
        berlin(2027, 4, 6, 2, 0),
        berlin(2027, 7, 6, 2, 0),
        berlin(2027, 10, 5, 2, 0),
    ]
    assert {e.duration for e in inspections} == {timedelta(hours=2)}
    assert {e.duration for e in events if e.category == "backup-test"} == {timedelta(hours=1)}
    assert "moved from 2027-01-05 (blackout: Epiphany <eve>)" in inspections[0].description
    assert default_duration("backup-test", {"backup-test": timedelta(minutes=30)}) == timedelta(
        minutes=30
    )


def test_moved_run_keeps_its_uid() -> None:
    plan = sample_plan()
    moved = next(e for e in annual_plan_events(plan) if e.start == berlin(2027, 1, 6, 2, 0))
    # Seeded by the original slot (02:00 CET = 01:00 UTC on the 5th), not the moved time.
    assert moved.uid_seed == "ACME-01|inspection|20270105T010000Z"

    text = ics_calendar(annual_plan_events(plan), calendar_name="ACME 2027", dtstamp=STAMP)
    _, parsed = parse_ics(text)
    assert len(parsed) == 15
    assert len({e["UID"] for e in parsed}) == 15
    assert parsed[0]["DTSTART"] == "20270106T010000Z"
    assert "moved from 2027-01-05" in parsed[0]["DESCRIPTION"]


def test_html_plan_escapes_and_lists_moved_and_skipped() -> None:
    html = render_annual_plan_html(sample_plan("<script>alert(1)</script>"), TEMPLATES)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "ACME GmbH &amp; Co. KG" in html
    assert "moved from 2027-01-05 (blackout: Epiphany &lt;eve&gt;)" in html
    assert "skipped (blackout: Christmas freeze)" in html
    for month in ("January 2027", "June 2027", "December 2027"):
        assert month in html
    assert "Europe/Berlin" in html


def test_html_plan_rows_and_summary() -> None:
    html = render_annual_plan_html(sample_plan(), TEMPLATES)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    # The moved inspection: new date, local time, weekday, process, cadence as written.
    assert (
        "2027-01-06 02:00 Wednesday Quarterly health inspection quarterly, first Tuesday, 02:00"
        in text
    )
    assert "2027-12-31 18:00 Friday Monthly backup test monthly, last Friday, 18:00" in text
    # Summary per process: runs, moved, skipped.
    assert "Quarterly health inspection 4 1 0" in text
    assert "Monthly backup test 11 0 1" in text
    # Blackout periods: from, to, days, reason.
    assert "2027-12-24 2027-12-31 8 Christmas freeze" in text
    assert html.count('<tr class="moved">') == 1
    assert html.count('<tr class="skipped">') == 1


def test_html_plan_for_an_empty_year() -> None:
    plan = AnnualPlan(
        customer_name="Empty Ltd",
        contract_code="E-1",
        contract_name="Nothing",
        year=2027,
        timezone=TZ,
    )
    html = render_annual_plan_html(plan, TEMPLATES)
    assert html.count("Nothing planned.") == 12
    assert "No blackout periods." in html
    assert "Nothing is planned for 2027." in html
