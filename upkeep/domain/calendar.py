"""The customer's annual service plan: as an iCalendar file and as a printable HTML page.

* :func:`ics_calendar` writes RFC 5545 text with the ``icalendar`` library, times in UTC
  (``...Z``), so no VTIMEZONE is needed and every calendar shows the right instant;
* :func:`annual_plan_events` turns an :class:`AnnualPlan` into calendar events (skipped
  runs are left out), with UIDs stable across renders so re-importing updates events;
* :func:`plan_view` is what the printable HTML page shows (rendered by
  ``upkeep.tasks.render.render_annual_plan_html``).

Everything here is pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar

from upkeep.domain.cadence import Blackout, PlannedRun, zone

__all__ = [
    "DEFAULT_PRODID",
    "AnnualPlan",
    "CalendarEvent",
    "PlanItem",
    "annual_plan_events",
    "default_duration",
    "event_uid",
    "ics_calendar",
    "plan_items",
]

DEFAULT_PRODID = "-//upkeep//annual service plan//EN"
UID_DOMAIN = "upkeep"

# English on purpose: strftime's %A/%B follow the machine's locale.
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


# ---------------------------------------------------------------------------------------------
# iCalendar


@dataclass(frozen=True)
class CalendarEvent:
    """One event; ``start`` must be timezone-aware. ``uid_seed`` identifies it across renders."""

    start: datetime
    duration: timedelta
    summary: str
    description: str
    category: str
    uid_seed: str


def event_uid(uid_seed: str) -> str:
    """A stable UID for an event: the same seed gives the same UID in every render."""
    return f"{hashlib.sha256(uid_seed.encode('utf-8')).hexdigest()[:32]}@{UID_DOMAIN}"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"calendar time {moment} has no timezone")
    return moment.astimezone(UTC)


def _vevent(event: CalendarEvent, dtstamp: datetime) -> icalendar.Event:
    vevent = icalendar.Event()
    vevent.add("uid", event_uid(event.uid_seed))
    vevent.add("dtstamp", dtstamp)
    vevent.add("dtstart", _utc(event.start))
    vevent.add("dtend", _utc(event.start + event.duration))
    vevent.add("summary", event.summary)
    if event.description:
        vevent.add("description", event.description)
    if event.category:
        # One category whose text may hold commas: escaped, not split into several.
        vevent.add("categories", icalendar.vText(event.category))
    vevent.add("transp", "OPAQUE")
    return vevent


def ics_calendar(
    events: Iterable[CalendarEvent],
    *,
    calendar_name: str,
    prodid: str = DEFAULT_PRODID,
    dtstamp: datetime | None = None,
) -> str:
    """An RFC 5545 VCALENDAR with one VEVENT per event, ordered by start, written by the
    ``icalendar`` library (CRLF, folding at 75 octets, TEXT escaping); DTSTART/DTEND in UTC.
    ``dtstamp`` (default: now) is when the calendar was made; pass it for reproducible output.
    """
    stamp = _utc(dtstamp if dtstamp is not None else datetime.now(UTC))
    cal = icalendar.Calendar()
    cal.add("version", "2.0")
    cal.add("prodid", prodid)
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", icalendar.vText(calendar_name))
    for event in sorted(events, key=lambda e: (e.start.astimezone(UTC), e.uid_seed)):
        cal.add_component(_vevent(event, stamp))
    return cal.to_ical().decode("utf-8")


# ---------------------------------------------------------------------------------------------
# The annual plan


@dataclass(frozen=True)
class PlanItem:
    """One run of one process in the plan (see :class:`upkeep.domain.cadence.PlannedRun`)."""

    process: str
    title: str
    at: datetime
    original: datetime
    moved: bool
    skipped: bool
    reason: str | None
    cadence_text: str


@dataclass(frozen=True)
class AnnualPlan:
    """A contract's planned work for one calendar year, times aware (shown in ``timezone``)."""

    customer_name: str
    contract_code: str
    contract_name: str
    year: int
    timezone: str
    items: list[PlanItem] = field(default_factory=list)
    blackouts: list[Blackout] = field(default_factory=list)


def plan_items(
    runs: Iterable[PlannedRun], *, process: str, title: str, cadence_text: str
) -> list[PlanItem]:
    """The plan items of one process from its planned runs."""
    return [
        PlanItem(
            process=process,
            title=title,
            at=run.at,
            original=run.original,
            moved=run.moved,
            skipped=run.skipped,
            reason=run.reason,
            cadence_text=cadence_text,
        )
        for run in runs
    ]


DEFAULT_DURATION = timedelta(hours=1)
INSPECTION_DURATION = timedelta(hours=2)


def default_duration(process: str, durations: Mapping[str, timedelta] | None = None) -> timedelta:
    """How long a process's calendar event lasts: ``durations[process]`` when given, else 2 h
    for inspections (a process whose name contains "inspection") and 1 h for everything else."""
    if durations and process in durations:
        return durations[process]
    return INSPECTION_DURATION if "inspection" in process.lower() else DEFAULT_DURATION


def _blackout_note(reason: str | None) -> str:
    return f"blackout: {reason}" if reason else "blackout"


def _note(item: PlanItem, tz: str) -> str | None:
    if item.skipped:
        return f"skipped ({_blackout_note(item.reason)})"
    if item.moved:
        original = item.original.astimezone(zone(tz))
        return f"moved from {original:%Y-%m-%d} ({_blackout_note(item.reason)})"
    return None


def annual_plan_events(
    plan: AnnualPlan, durations: Mapping[str, timedelta] | None = None
) -> list[CalendarEvent]:
    """The plan's runs as calendar events; skipped runs are left out.

    The UID seed is contract, process and the original slot (in UTC): a moved run keeps its
    UID, so a re-imported calendar moves the event instead of adding one.
    """
    tz = zone(plan.timezone)
    events: list[CalendarEvent] = []
    for item in plan.items:
        if item.skipped:
            continue
        local = item.at.astimezone(tz)
        description = [
            f"Customer: {plan.customer_name}",
            f"Contract: {plan.contract_code} – {plan.contract_name}",
            f"Process: {item.title}",
            f"Cadence: {item.cadence_text}",
            f"Local time: {local:%Y-%m-%d %H:%M} {plan.timezone}",
        ]
        note = _note(item, plan.timezone)
        if note:
            description.append(f"Note: {note}")
        events.append(
            CalendarEvent(
                start=item.at,
                duration=default_duration(item.process, durations),
                summary=f"{item.title} – {plan.contract_code}",
                description="\n".join(description),
                category=item.process,
                uid_seed=f"{plan.contract_code}|{item.process}|{_utc(item.original):%Y%m%dT%H%M%SZ}",
            )
        )
    return events


def plan_view(plan: AnnualPlan) -> dict[str, Any]:
    """Everything the template shows, already formatted (the template only lays it out)."""
    tz = zone(plan.timezone)
    by_month: dict[tuple[int, int], list[dict[str, Any]]] = {
        (plan.year, month): [] for month in range(1, 13)
    }
    summary: dict[str, dict[str, Any]] = {}
    for item in sorted(plan.items, key=lambda i: (i.at, i.process)):
        shown = (item.original if item.skipped else item.at).astimezone(tz)
        by_month.setdefault((shown.year, shown.month), []).append(
            {
                "date": f"{shown:%Y-%m-%d}",
                "time": f"{shown:%H:%M}",
                "weekday": WEEKDAY_NAMES[shown.weekday()],
                "title": item.title,
                "process": item.process,
                "cadence": item.cadence_text,
                "note": _note(item, plan.timezone),
                "state": "skipped" if item.skipped else "moved" if item.moved else "planned",
            }
        )
        counts = summary.setdefault(
            item.process,
            {"process": item.process, "title": item.title, "runs": 0, "moved": 0, "skipped": 0},
        )
        counts["skipped" if item.skipped else "runs"] += 1
        counts["moved"] += int(item.moved and not item.skipped)
    months = [
        {"title": f"{MONTH_NAMES[month - 1]} {year}", "rows": rows}
        for (year, month), rows in sorted(by_month.items())
    ]
    blackouts = [
        {
            "start": b.start.isoformat(),
            "end": b.end.isoformat(),
            "days": (b.end - b.start).days + 1,
            "reason": b.reason,
        }
        for b in sorted(plan.blackouts, key=lambda b: (b.start, b.end))
    ]
    return {
        "months": months,
        "summary": sorted(summary.values(), key=lambda c: c["title"]),
        "blackouts": blackouts,
        "total_runs": sum(c["runs"] for c in summary.values()),
    }
