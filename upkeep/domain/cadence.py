"""Cadences: when a contract promises recurring work, and when it will actually run.

A cadence is written the way people say it, as cron, or as an iCalendar RRULE, and is always
read in the contract's IANA timezone (wall-clock times stay fixed across daylight saving)::

    "quarterly, first Tuesday, 02:00"          FREQ=MONTHLY;BYMONTH=1,4,7,10;BYDAY=+1TU;...
    "monthly, day 15, 03:30"                   FREQ=MONTHLY;BYMONTHDAY=15;...
    "monthly, last Friday, 18:00"              FREQ=MONTHLY;BYDAY=-1FR;...
    "monthly, last day, 22:00"                 FREQ=MONTHLY;BYMONTHDAY=-1;...
    "weekly, Monday, 07:00"                    FREQ=WEEKLY;BYDAY=MO;...
    "weekly, Monday and Thursday, 07:00"       FREQ=WEEKLY;BYDAY=MO,TH;...
    "daily, 06:00"                             FREQ=DAILY;...
    "yearly, January, first Monday, 09:00"     FREQ=YEARLY;BYMONTH=1;BYDAY=+1MO;...
    "twice a year, March and September, second Wednesday, 10:00"
    {"cron": "0 1 * * 6"}
    {"rrule": "FREQ=MONTHLY;BYDAY=2TU;BYHOUR=4;BYMINUTE=0"}

Decisions (each refused input raises :class:`CadenceError` naming the problem):

* the time is required in phrases (``HH:MM``, 24-hour) and as ``BYHOUR`` in RRULEs: a run
  time nobody wrote down would silently be midnight;
* a day of the month must exist in every month the cadence covers (``monthly, day 31``
  would skip seven months a year): write ``last day`` instead;
* RRULEs must not carry ``COUNT`` or ``UNTIL`` (the schedule would end while the contract
  runs on), nor ``DTSTART`` (Prefect anchors rules itself, in the contract's timezone) nor
  RDATE/EXDATE/EXRULE lines (blackouts are the way to leave days out); their frequency is
  DAILY, WEEKLY, MONTHLY or YEARLY (anything finer is not a contract cadence: use cron);
* cron has the five standard fields; Prefect's validation applies (no random/hashed).

Run times come from Prefect's own server schedule code (:func:`occurrences`), so the plan a
customer sees is what Prefect schedules, DST quirks included: on the spring-forward day a
time that does not exist (02:30 in Europe/Berlin) runs one hour earlier (01:30 CET, the
wall-clock time read with the summer offset); on the fall-back day a time that exists
twice runs once, at its first occurrence (summer time).

Blackouts (:class:`Blackout`) are days when no work may happen; a run that falls on one is
moved to the next allowed day at the same local time, or skipped (:func:`apply_blackouts`).

Everything here is pure: no I/O, no Prefect API calls.
"""

from __future__ import annotations

import asyncio
import calendar as _stdcalendar
import re
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dateutil.rrule
from prefect._internal.schemas.validators import validate_cron_string
from prefect.schedules import Cron, RRule
from prefect.server.schemas.schedules import CronSchedule, RRuleSchedule

if TYPE_CHECKING:
    from prefect.schedules import Schedule

__all__ = [
    "Blackout",
    "BlackoutPolicy",
    "Cadence",
    "CadenceError",
    "PlannedRun",
    "apply_blackouts",
    "blackout_on",
    "describe",
    "dst_shift",
    "local_time_on",
    "next_allowed_day",
    "next_times",
    "occurrences",
    "parse_blackouts",
    "parse_cadence",
    "planned_runs",
    "to_prefect_schedule",
    "zone",
]


class CadenceError(ValueError):
    """A cadence, blackout or timezone that cannot be used; the message says why."""


CadenceKind = Literal["phrase", "cron", "rrule"]
BlackoutPolicy = Literal["next_allowed_day", "skip"]


@dataclass(frozen=True)
class Cadence:
    """A parsed cadence.

    ``text`` is what was written (the phrase, the cron expression or the RRULE); ``rrule`` is
    the normalised RRULE for phrases and RRULEs, ``cron`` the normalised cron expression.
    """

    kind: CadenceKind
    text: str
    rrule: str | None = None
    cron: str | None = None


# ---------------------------------------------------------------------------------------------
# Phrases

WEEKDAYS: Mapping[str, str] = {
    "monday": "MO",
    "tuesday": "TU",
    "wednesday": "WE",
    "thursday": "TH",
    "friday": "FR",
    "saturday": "SA",
    "sunday": "SU",
}
_WEEKDAY_CODES: dict[str, str] = {**WEEKDAYS, **{name[:3]: code for name, code in WEEKDAYS.items()}}

MONTHS: Mapping[str, int] = {
    name.lower(): number for number, name in enumerate(_stdcalendar.month_name) if name
}
_MONTH_NUMBERS: dict[str, int] = {**MONTHS, **{name[:3]: n for name, n in MONTHS.items()}}

ORDINALS: Mapping[str, int] = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
_ORDINAL_NUMBERS: dict[str, int] = {**ORDINALS, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4}

_FREQUENCIES: Mapping[str, str] = {
    "daily": "daily",
    "weekly": "weekly",
    "monthly": "monthly",
    "quarterly": "quarterly",
    "twice a year": "twice a year",
    "semi-annually": "twice a year",
    "half-yearly": "twice a year",
    "yearly": "yearly",
    "annually": "yearly",
}
_FREQUENCY_HINT = "use daily, weekly, monthly, quarterly, twice a year or yearly"
_QUARTER_MONTHS = (1, 4, 7, 10)
_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})$")
_DAY_RE = re.compile(r"^day (\d{1,2})$")
# The shortest length of each month: a day of the month must exist every year.
_MIN_MONTH_DAYS = {m: 28 if m == 2 else _stdcalendar.monthrange(2001, m)[1] for m in range(1, 13)}


def _fail(text: str, reason: str) -> CadenceError:
    return CadenceError(f"{text!r}: {reason}")


def _parse_time(text: str, part: str) -> time:
    match = _TIME_RE.match(part)
    if match is None:
        if re.fullmatch(r"[\d:.apm ]+", part):
            raise _fail(text, f"bad time {part!r} (write HH:MM, 24-hour, e.g. 02:00)")
        raise _fail(
            text, f"the run time is missing: end with HH:MM (24-hour), e.g. '{text}, 02:00'"
        )
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        raise _fail(text, f"bad time {part!r} (write HH:MM, 24-hour, 00:00 to 23:59)")
    return time(hour, minute)


def _split_and(part: str) -> list[str]:
    return [p.strip() for p in re.split(r"\s+and\s+|\s*&\s*|\s*/\s*", part) if p.strip()]


def _weekday(text: str, word: str) -> str:
    code = _WEEKDAY_CODES.get(word)
    if code is None:
        raise _fail(text, f"unknown weekday {word!r} (write Monday..Sunday or Mon..Sun)")
    return code


def _month(text: str, word: str) -> int:
    number = _MONTH_NUMBERS.get(word)
    if number is None:
        raise _fail(text, f"unknown month {word!r} (write January..December or Jan..Dec)")
    return number


def _day_rule(text: str, part: str | None, months: Sequence[int]) -> str:
    """The BYDAY/BYMONTHDAY part for "first Tuesday", "last Friday", "day 15", "last day"."""
    if part is None:
        raise _fail(text, "say which day: e.g. 'first Tuesday', 'last Friday' or 'day 15'")
    if part == "last day":
        return "BYMONTHDAY=-1"
    day_match = _DAY_RE.match(part)
    if day_match is not None:
        day = int(day_match.group(1))
        longest_possible = min(_MIN_MONTH_DAYS[m] for m in months)
        if not 1 <= day <= longest_possible:
            raise _fail(
                text,
                f"day {day} does not exist in every month of this cadence "
                f"(use 1..{longest_possible}, or 'last day')",
            )
        return f"BYMONTHDAY={day}"
    words = part.split()
    if len(words) == 2 and words[1] in _WEEKDAY_CODES:
        ordinal = _ORDINAL_NUMBERS.get(words[0])
        if ordinal is None:
            raise _fail(text, "ordinal must be first, second, third, fourth or last")
        return f"BYDAY={ordinal:+d}{_WEEKDAY_CODES[words[1]]}"
    if len(words) == 2 and words[0] in _ORDINAL_NUMBERS:
        _weekday(text, words[1])
    raise _fail(
        text, f"cannot read the day {part!r}: write e.g. 'first Tuesday', 'last Friday', 'day 15'"
    )


def _no_more(text: str, rest: Sequence[str], frequency: str) -> None:
    if rest:
        raise _fail(text, f"unexpected {', '.join(rest)!r} for a {frequency!r} cadence")


def _phrase_rule(text: str) -> str:
    parts = [re.sub(r"\s+", " ", p.strip().lower()) for p in text.split(",")]
    parts = [p for p in parts if p]
    if not parts:
        raise CadenceError("empty cadence")
    frequency = _FREQUENCIES.get(parts[0])
    if frequency is None:
        raise _fail(text, f"unknown frequency {parts[0]!r} ({_FREQUENCY_HINT})")
    if len(parts) < 2:
        raise _fail(text, "the run time is missing: end with HH:MM (24-hour)")
    at = _parse_time(text, parts[-1])
    middle = parts[1:-1]

    if frequency == "daily":
        _no_more(text, middle, frequency)
        rule = "FREQ=DAILY"
    elif frequency == "weekly":
        if not middle:
            raise _fail(text, "say which weekday: e.g. 'weekly, Monday, 07:00'")
        _no_more(text, middle[1:], frequency)
        days = [_weekday(text, w) for w in _split_and(middle[0])]
        rule = f"FREQ=WEEKLY;BYDAY={','.join(dict.fromkeys(days))}"
    elif frequency in ("monthly", "quarterly"):
        months = tuple(range(1, 13)) if frequency == "monthly" else _QUARTER_MONTHS
        _no_more(text, middle[1:], frequency)
        day_rule = _day_rule(text, middle[0] if middle else None, months)
        by_month = "" if frequency == "monthly" else ";BYMONTH=1,4,7,10"
        rule = f"FREQ=MONTHLY{by_month};{day_rule}"
    else:
        if not middle:
            raise _fail(text, f"say which month(s) and day: e.g. '{frequency}, January, day 15'")
        months = tuple(sorted({_month(text, w) for w in _split_and(middle[0])}))
        wanted = 1 if frequency == "yearly" else 2
        if len(months) != wanted:
            raise _fail(
                text,
                f"a {frequency!r} cadence names {'one month' if wanted == 1 else 'two months'}"
                f", got {middle[0]!r}",
            )
        _no_more(text, middle[2:], frequency)
        day_rule = _day_rule(text, middle[1] if len(middle) > 1 else None, months)
        rule = f"FREQ=YEARLY;BYMONTH={','.join(str(m) for m in months)};{day_rule}"
    return f"{rule};BYHOUR={at.hour};BYMINUTE={at.minute};BYSECOND=0"


# ---------------------------------------------------------------------------------------------
# Cron and RRULE

_ALLOWED_FREQ = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_REFUSED_RRULE_PARTS: Mapping[str, str] = {
    "COUNT": "COUNT would end the schedule while the contract runs on",
    "UNTIL": "UNTIL would end the schedule while the contract runs on",
}


def _normalise_cron(text: str) -> str:
    cron = " ".join(text.split())
    if len(cron.split(" ")) != 5:
        raise _fail(text, "invalid cron: it needs 5 fields (minute hour day month weekday)")
    try:
        validate_cron_string(cron)
    except ValueError as exc:
        raise _fail(text, f"invalid cron: {exc}") from None
    return cron


def _normalise_rrule(text: str) -> str:
    lines = [re.sub(r"\s+", "", line).upper() for line in text.strip().splitlines()]
    lines = [line for line in lines if line]
    if any(line.startswith("DTSTART") for line in lines):
        raise _fail(text, "RRULE must not contain DTSTART: Prefect anchors it in the timezone")
    if len(lines) != 1 or lines[0].startswith(("EXDATE", "RDATE", "EXRULE")):
        raise _fail(
            text, "write a single RRULE line (no RDATE/EXDATE/EXRULE: use blackouts instead)"
        )
    rule = lines[0].removeprefix("RRULE:")
    params: dict[str, str] = {}
    for item in filter(None, rule.split(";")):
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise _fail(text, f"invalid RRULE: cannot read {item!r} (expected NAME=VALUE)")
        if name in params:
            raise _fail(text, f"invalid RRULE: {name} given twice")
        params[name] = value
    for name, why in _REFUSED_RRULE_PARTS.items():
        if name in params:
            raise _fail(text, f"RRULE must not contain {name}: {why}")
    if "DTSTART" in params:
        raise _fail(text, "RRULE must not contain DTSTART: Prefect anchors it in the timezone")
    if "FREQ" not in params:
        raise _fail(text, "invalid RRULE: FREQ is missing")
    if params["FREQ"] not in _ALLOWED_FREQ:
        raise _fail(
            text,
            f"RRULE FREQ={params['FREQ']} is not a contract cadence "
            f"(use {', '.join(_ALLOWED_FREQ)}; cron for anything finer)",
        )
    if "BYHOUR" not in params:
        raise _fail(text, "RRULE must say the run time: BYHOUR (and BYMINUTE) are missing")
    params.setdefault("BYMINUTE", "0")
    params.setdefault("BYSECOND", "0")
    normalised = ";".join(f"{name}={value}" for name, value in params.items())
    try:
        dateutil.rrule.rrulestr(normalised, dtstart=datetime(2020, 1, 1))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise _fail(text, f"invalid RRULE: {exc or type(exc).__name__}") from None
    return normalised


def parse_cadence(value: object) -> Cadence:
    """Read a cadence as written in the inventory.

    ``value`` is a phrase (``"quarterly, first Tuesday, 02:00"``, case-insensitive), a
    mapping ``{"cron": "..."}`` or ``{"rrule": "..."}``, or an already parsed
    :class:`Cadence` (returned unchanged). Raises :class:`CadenceError` saying what is wrong.
    """
    if isinstance(value, Cadence):
        return value
    if isinstance(value, str):
        text = value.strip()
        return Cadence(kind="phrase", text=text, rrule=_phrase_rule(text))
    if isinstance(value, Mapping):
        keys = set(value)
        if len(keys) != 1 or not keys <= {"cron", "rrule"}:
            raise CadenceError(
                f"a cadence mapping has exactly one key, 'cron' or 'rrule'; got {sorted(keys)}"
            )
        (key,) = keys
        text = value[key]
        if not isinstance(text, str) or not text.strip():
            raise CadenceError(f"{key}: expected a non-empty string, got {text!r}")
        text = text.strip()
        if key == "cron":
            return Cadence(kind="cron", text=text, cron=_normalise_cron(text))
        return Cadence(kind="rrule", text=text, rrule=_normalise_rrule(text))
    raise CadenceError(
        "a cadence is a phrase like 'monthly, day 15, 03:30', {'cron': ...} or {'rrule': ...}; "
        f"got {type(value).__name__}"
    )


def describe(cadence: Cadence, tz: str | None = None, after: datetime | None = None) -> str:
    """The cadence in words a customer understands, never the raw cron or RRULE.

    ``"quarterly, first Tuesday at 02:00"``, ``"every Saturday at 01:00"``; phrases, cron and
    RRULEs of the same shape read the same. A shape without plain words is "on a custom
    schedule", followed by its next run times when ``tz`` and ``after`` are given.
    """
    shape = _shape(cadence)
    words = None if shape is None else _shape_words(shape)
    if words is not None:
        return words
    if tz is None or after is None:
        return CUSTOM_SCHEDULE
    try:
        upcoming = ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in next_times(cadence, tz, after, 3))
    except ValueError:  # a date that never comes (30 February)
        upcoming = ""
    return f"{CUSTOM_SCHEDULE} (next: {upcoming or 'none'})"


def zone(tz: str) -> ZoneInfo:
    """The IANA timezone ``tz``; :class:`CadenceError` when it does not exist."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise CadenceError(
            f"unknown timezone {tz!r} (use an IANA name like Europe/Berlin)"
        ) from None


# ---------------------------------------------------------------------------------------------
# Run times


T = TypeVar("T")


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion, also when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _server_schedule(cadence: Cadence, tz: str) -> Any:
    if cadence.cron is not None:
        return CronSchedule(cron=cadence.cron, timezone=tz)
    if cadence.rrule is not None:
        return RRuleSchedule(rrule=cadence.rrule, timezone=tz)
    raise CadenceError(f"{cadence.text!r}: neither an RRULE nor a cron expression")


def occurrences(cadence: Cadence, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """Every run time of ``cadence`` in ``[start, end)``, ascending, aware, in zone ``tz``.

    Computed by Prefect's server schedule code (``RRuleSchedule``/``CronSchedule``
    ``get_dates``), so these are the times Prefect will schedule. Naive ``start``/``end``
    are read in ``tz``.
    """
    zoneinfo = zone(tz)
    start, end = _aware(start, zoneinfo), _aware(end, zoneinfo)
    schedule = _server_schedule(cadence, tz)
    # Prefect stops after 1000 dates per call: page through long ranges.
    page = 1000
    found: list[datetime] = []
    cursor = start
    while cursor < end:
        batch = _run_coroutine(schedule.get_dates(n=page, start=cursor, end=end))
        # Prefect returns its own datetime subclass; hand back plain stdlib datetimes.
        times = [datetime.fromtimestamp(d.timestamp(), tz=zoneinfo) for d in batch]
        found.extend(t for t in times if start <= t < end)
        if len(batch) < page:
            break
        cursor = times[-1] + timedelta(seconds=1)
    return sorted(set(found))


def _aware(moment: datetime, zoneinfo: tzinfo) -> datetime:
    return moment.replace(tzinfo=zoneinfo) if moment.tzinfo is None else moment


def local_time_on(day: date, wall: time, zoneinfo: tzinfo) -> datetime:
    """``wall`` o'clock on ``day`` in ``zoneinfo``, resolved the way Prefect resolves it.

    A wall-clock time that exists twice (fall back) is its first occurrence; one that does not
    exist (spring forward) is read with the offset after the change, i.e. one hour earlier.
    """
    first = datetime.combine(day, wall, tzinfo=zoneinfo).replace(fold=0)
    if first.astimezone(UTC).astimezone(zoneinfo).replace(tzinfo=None) == first.replace(
        tzinfo=None
    ):
        return first
    return first.replace(fold=1).astimezone(UTC).astimezone(zoneinfo)


# ---------------------------------------------------------------------------------------------
# Blackouts


@dataclass(frozen=True)
class Blackout:
    """Days ``start``..``end`` (inclusive; one day when equal) when no work may happen."""

    start: date
    end: date
    reason: str = ""

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise CadenceError(
                f"blackout from {self.start} to {self.end}: the start is after the end"
            )

    def covers(self, day: date) -> bool:
        return self.start <= day <= self.end


@dataclass(frozen=True)
class PlannedRun:
    """One slot of a cadence after blackouts.

    ``original`` is the cadence's slot, ``at`` when it will run (== ``original`` unless
    moved; for a skipped run ``at`` is the slot that will not run), ``reason`` the
    blackout's reason when moved or skipped.
    """

    at: datetime
    original: datetime
    moved: bool = False
    skipped: bool = False
    reason: str | None = None


def blackout_on(day: date, blackouts: Iterable[Blackout]) -> Blackout | None:
    """The first of ``blackouts`` covering ``day``, or None."""
    return next((b for b in blackouts if b.covers(day)), None)


def next_allowed_day(day: date, blackouts: Iterable[Blackout]) -> date:
    """The first day on or after ``day`` that no blackout covers (weekends are allowed)."""
    blackouts = list(blackouts)
    while (blocking := blackout_on(day, blackouts)) is not None:
        day = blocking.end + timedelta(days=1)
    return day


def _check_policy(policy: str) -> None:
    if policy not in get_args(BlackoutPolicy):
        raise CadenceError(
            f"unknown blackout policy {policy!r} (use {' or '.join(get_args(BlackoutPolicy))})"
        )


def apply_blackouts(
    times: Iterable[datetime], blackouts: Sequence[Blackout], policy: BlackoutPolicy | str
) -> list[PlannedRun]:
    """Each run time after blackouts, ordered by when it runs.

    A time on a blackout day (its local date) is moved to :func:`next_allowed_day` at the
    same local wall-clock time (``"next_allowed_day"``) or dropped (``"skip"``; kept in the
    result with ``skipped=True``). A moved run that lands exactly on another run's time is
    not doubled: it is marked skipped, with the reason saying it merged.
    """
    _check_policy(policy)
    runs: list[PlannedRun] = []
    for slot in times:
        blocking = blackout_on(slot.date(), blackouts)
        if blocking is None:
            runs.append(PlannedRun(at=slot, original=slot))
        elif policy == "skip":
            runs.append(PlannedRun(at=slot, original=slot, skipped=True, reason=blocking.reason))
        else:
            if slot.tzinfo is None:
                raise CadenceError(f"run time {slot} has no timezone")
            moved_day = next_allowed_day(slot.date(), blackouts)
            at = local_time_on(moved_day, slot.time(), slot.tzinfo)
            runs.append(PlannedRun(at=at, original=slot, moved=True, reason=blocking.reason))
    return _merge_collisions(runs)


def _merge_collisions(runs: list[PlannedRun]) -> list[PlannedRun]:
    taken = {run.at for run in runs if not run.moved and not run.skipped}
    merged: list[PlannedRun] = []
    for run in sorted(runs, key=lambda r: (r.at, r.original)):
        if run.moved and run.at in taken:
            run = PlannedRun(
                at=run.original,
                original=run.original,
                skipped=True,
                reason=f"{run.reason}; merged into the run already planned at that time"
                if run.reason
                else "merged into the run already planned at that time",
            )
        elif run.moved:
            taken.add(run.at)
        merged.append(run)
    return sorted(merged, key=lambda r: (r.at, r.original))


def planned_runs(
    cadence: Cadence,
    tz: str,
    blackouts: Sequence[Blackout],
    policy: BlackoutPolicy | str,
    start: datetime,
    end: datetime,
) -> list[PlannedRun]:
    """The runs of ``cadence`` for ``[start, end)`` after blackouts.

    Includes every slot in the range (moved ones even when moved past ``end``) and slots from
    a blackout just before ``start`` that are moved into the range.
    """
    _check_policy(policy)
    zoneinfo = zone(tz)
    start, end = _aware(start, zoneinfo), _aware(end, zoneinfo)
    lookback = start
    if policy == "next_allowed_day":
        # Slots in a blackout that touches the range's start can be moved into the range.
        day = start.astimezone(zoneinfo).date()
        while (blocking := blackout_on(day - timedelta(days=1), blackouts)) is not None:
            day = blocking.start
        lookback = min(start, datetime.combine(day, time(), tzinfo=zoneinfo))
    runs = apply_blackouts(occurrences(cadence, tz, lookback, end), blackouts, policy)
    return [run for run in runs if start <= run.original < end or start <= run.at < end]


def parse_blackouts(value: object) -> list[Blackout]:
    """Read blackouts from the inventory, sorted by start.

    Accepts a list of ``"2026-12-24"`` strings, ``date`` objects, and mappings
    ``{"from": ..., "to": ..., "reason": ...}`` (``to`` defaults to ``from``, ``reason`` to
    empty). None means no blackouts. Raises :class:`CadenceError` for anything else.
    """
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise CadenceError(f"blackouts: expected a list, got {type(value).__name__}")
    blackouts: list[Blackout] = []
    for index, item in enumerate(value):
        where = f"blackouts[{index}]"
        if isinstance(item, Mapping):
            unknown = set(item) - {"from", "to", "reason"}
            if unknown:
                raise CadenceError(
                    f"{where}: unknown keys {sorted(unknown)} (use from, to, reason)"
                )
            if "from" not in item:
                raise CadenceError(f"{where}: 'from' is missing")
            first = _to_date(item["from"], f"{where}.from")
            last = _to_date(item.get("to", item["from"]), f"{where}.to")
            reason = item.get("reason", "")
            if not isinstance(reason, str):
                raise CadenceError(f"{where}.reason: expected text, got {type(reason).__name__}")
            if first > last:
                raise CadenceError(f"{where}: from {first} is after to {last}")
            blackouts.append(Blackout(first, last, reason.strip()))
        else:
            day = _to_date(item, where)
            blackouts.append(Blackout(day, day))
    return sorted(blackouts, key=lambda b: (b.start, b.end))


def _to_date(value: object, where: str) -> date:
    if isinstance(value, datetime):
        raise CadenceError(f"{where}: {value} is a date and time; a blackout is whole days")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise CadenceError(f"{where}: bad date {value!r} (write YYYY-MM-DD)") from None
    raise CadenceError(f"{where}: expected a date (YYYY-MM-DD), got {type(value).__name__}")


# ---------------------------------------------------------------------------------------------
# Prefect


def to_prefect_schedule(cadence: Cadence, tz: str) -> Schedule:
    """The client schedule a deployment takes (``prefect.schedules.RRule`` or ``Cron``)."""
    zone(tz)
    if cadence.cron is not None:
        return Cron(cadence.cron, timezone=tz)
    if cadence.rrule is not None:
        return RRule(cadence.rrule, timezone=tz)
    raise CadenceError(f"{cadence.text!r}: neither an RRULE nor a cron expression")


# ---------------------------------------------------------------------------------------------
# In words

CUSTOM_SCHEDULE = "on a custom schedule"
_DAY_NAMES: Mapping[str, str] = {code: name.capitalize() for name, code in WEEKDAYS.items()}
_DAY_ORDER = tuple(WEEKDAYS.values())
_CRON_DAYS = ("SU", "MO", "TU", "WE", "TH", "FR", "SA", "SU")
_ORDINAL_WORDS: Mapping[int, str] = {
    1: "first",
    2: "second",
    3: "third",
    4: "fourth",
    5: "fifth",
    -1: "last",
    -2: "second-to-last",
}
_MONTH_WORDS = tuple(name for name in _stdcalendar.month_name if name)
_MAX_TIMES = 4
_UNITS: Mapping[str, Literal["day", "week", "month", "year"]] = {
    "DAILY": "day",
    "WEEKLY": "week",
    "MONTHLY": "month",
    "YEARLY": "year",
}


@dataclass(frozen=True)
class _Shape:
    """A cadence reduced to what plain words can say; built from its RRULE or cron."""

    interval: int
    months: tuple[int, ...]
    """Empty: every month."""
    weekdays: tuple[str, ...]
    """Every such weekday (MO..SU)."""
    nth: tuple[tuple[int, str], ...]
    """(ordinal, weekday): first Tuesday is (1, "TU"), last Friday (-1, "FR")."""
    monthdays: tuple[int, ...]
    """Days of the month; -1 is the last day."""
    times: tuple[time, ...]
    unit: Literal["day", "week", "month", "year"] = "day"
    """What ``interval`` counts."""


def _join(words: Sequence[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _ints(text: str, low: int, high: int) -> tuple[int, ...] | None:
    """``"1,4,7,10"``, ``"1-5"`` or ``"-1"`` as sorted numbers; None when it is not that."""
    found: set[int] = set()
    for item in text.split(","):
        single = re.fullmatch(r"[+-]?\d+", item)
        span = re.fullmatch(r"(\d+)-(\d+)", item)
        if single is not None:
            start = stop = int(item)
        elif span is not None:
            start, stop = int(span.group(1)), int(span.group(2))
        else:
            return None
        if not low <= start <= stop <= high:
            return None
        found.update(range(start, stop + 1))
    return tuple(sorted(found))


def _times(hours: tuple[int, ...] | None, minutes: tuple[int, ...] | None) -> tuple[time, ...]:
    if not hours or not minutes or len(hours) * len(minutes) > _MAX_TIMES:
        return ()
    return tuple(time(h, m) for h in hours for m in minutes)


def _rrule_shape(rule: str) -> _Shape | None:
    params = dict(item.split("=", 1) for item in rule.split(";") if "=" in item)
    params.pop("WKST", None)
    if params.pop("BYSECOND", "0") != "0" or set(params) - {
        "FREQ",
        "INTERVAL",
        "BYMONTH",
        "BYMONTHDAY",
        "BYDAY",
        "BYHOUR",
        "BYMINUTE",
    }:
        return None
    interval = params.get("INTERVAL", "1")
    months = _ints(params.get("BYMONTH", ""), 1, 12) if "BYMONTH" in params else ()
    monthdays = _ints(params["BYMONTHDAY"], -31, 31) if "BYMONTHDAY" in params else ()
    times = _times(_ints(params.get("BYHOUR", ""), 0, 23), _ints(params["BYMINUTE"], 0, 59))
    if not interval.isdigit() or months is None or monthdays is None or not times:
        return None
    weekdays: list[str] = []
    nth: list[tuple[int, str]] = []
    for item in filter(None, params.get("BYDAY", "").split(",")):
        match = re.fullmatch(r"([+-]?\d)?(MO|TU|WE|TH|FR|SA|SU)", item)
        if match is None:
            return None
        if match.group(1):
            nth.append((int(match.group(1)), match.group(2)))
        else:
            weekdays.append(match.group(2))
    freq = params["FREQ"]
    shape = _Shape(
        int(interval), months, tuple(weekdays), tuple(nth), monthdays, times, _UNITS[freq]
    )
    days_given = sum(map(bool, (weekdays, nth, monthdays)))
    if freq == "DAILY":
        fits = not nth and days_given <= 1 and (shape.interval == 1 or not (days_given or months))
    elif freq == "WEEKLY":
        fits = bool(weekdays) and days_given == 1 and (shape.interval == 1 or not months)
    else:
        # No day means "the day the rule was anchored on", two kinds of day intersect
        # (Friday the 13th): neither has plain words. An interval counts months or years.
        fits = days_given == 1 and (freq == "MONTHLY" or bool(months))
        fits = fits and (shape.interval == 1 or not (months or weekdays))
    return shape if fits else None


def _cron_fields(field: str, names: Mapping[str, int]) -> str:
    text = field.lower()
    for name, number in names.items():
        text = text.replace(name, str(number))
    return text


def _cron_shape(cron: str) -> _Shape | None:
    minute, hour, dom, month, dow = cron.split(" ")
    times = _times(_ints(hour, 0, 23), _ints(minute, 0, 59))
    if not times:
        return None
    month = _cron_fields(month, {m[:3].lower(): i for i, m in enumerate(_MONTH_WORDS, 1)})
    if month == "*" or month == "*/1":
        months: tuple[int, ...] | None = ()
    elif re.fullmatch(r"(\*|1)/(\d+)", month):
        months = tuple(range(1, 13, int(month.split("/")[1])))
    else:
        months = _ints(month, 1, 12)
    if months is None:
        return None
    if months == tuple(range(1, 13)):
        months = ()
    dow = _cron_fields(dow, {name[:3]: i for i, name in enumerate(("sun", *WEEKDAYS), 0)})
    weekdays: tuple[str, ...] = ()
    nth: tuple[tuple[int, str], ...] = ()
    if dow != "*":
        if "#" in dow:
            pairs = [item.split("#") for item in dow.split(",")]
            if not all(len(p) == 2 and p[0].isdigit() and p[1] in "12345" for p in pairs):
                return None
            if not all(0 <= int(p[0]) <= 7 for p in pairs):
                return None
            nth = tuple((int(p[1]), _CRON_DAYS[int(p[0])]) for p in pairs)
        else:
            numbers = _ints(dow, 0, 7)
            if numbers is None:
                return None
            weekdays = tuple(dict.fromkeys(_CRON_DAYS[n] for n in numbers))
    monthdays: tuple[int, ...] | None = ()
    if dom.upper() == "L":
        monthdays = (-1,)
    elif dom != "*":
        monthdays = _ints(dom, 1, 31)
    if monthdays is None or (monthdays and (weekdays or nth)):
        # cron runs on either when both are restricted: no plain words for that.
        return None
    return _Shape(1, months, weekdays, nth, monthdays, times, "day")


def _shape(cadence: Cadence) -> _Shape | None:
    if cadence.rrule is not None:
        return _rrule_shape(cadence.rrule)
    if cadence.cron is not None:
        return _cron_shape(cadence.cron)
    return None


def _weekday_words(codes: Sequence[str]) -> str:
    ordered = sorted(set(codes), key=_DAY_ORDER.index)
    if len(ordered) == 7:
        return "day"
    if ordered == list(_DAY_ORDER[:5]):
        return "weekday (Monday to Friday)"
    return _join([_DAY_NAMES[c] for c in ordered])


def _nth_words(nth: Sequence[tuple[int, str]]) -> str | None:
    by_day: dict[str, list[int]] = {}
    for ordinal, day in nth:
        if ordinal not in _ORDINAL_WORDS:
            return None
        by_day.setdefault(day, []).append(ordinal)
    return _join(
        [
            _join([_ORDINAL_WORDS[o] for o in sorted(ords, key=lambda o: (o < 0, abs(o)))])
            + " "
            + _DAY_NAMES[day]
            for day, ords in sorted(by_day.items(), key=lambda kv: _DAY_ORDER.index(kv[0]))
        ]
    )


def _monthday_words(days: Sequence[int]) -> str | None:
    if any(d < -1 or d == 0 for d in days):
        return None
    if days == [-1] or tuple(days) == (-1,):
        return "the last day"
    numbers = [str(d) for d in sorted(d for d in days if d > 0)]
    last = ["the last day"] if -1 in days else []
    return ("day " if len(numbers) == 1 else "days ") + _join(numbers + last)


def _month_list(months: Sequence[int]) -> str:
    return _join([_MONTH_WORDS[m - 1] for m in months])


def _how_often(months: Sequence[int], interval: int, unit: str) -> str:
    if not months:
        if interval == 1:
            return "yearly" if unit == "year" else "monthly"
        return f"every {interval} {'years' if unit == 'year' else 'months'}"
    if tuple(months) == (1, 4, 7, 10):
        return "quarterly"
    steps = {(b - a) % 12 for a, b in zip(months, (*months[1:], months[0] + 12), strict=True)}
    if len(months) == 4 and steps == {3}:
        return "quarterly"
    return {1: "yearly", 2: "twice a year"}.get(len(months), f"{len(months)} times a year")


def _shape_words(shape: _Shape) -> str | None:
    at = "at " + _join([f"{t:%H:%M}" for t in shape.times])
    months = shape.months
    in_months = f" in {_month_list(months)}" if months else ""
    if shape.nth or shape.monthdays:
        day = _nth_words(shape.nth) if shape.nth else _monthday_words(shape.monthdays)
        longest = max(_stdcalendar.monthrange(2000, m)[1] for m in months or range(1, 13))
        if day is None or any(d > longest for d in shape.monthdays):
            return None  # "30 February" would read well and never come
        how = _how_often(months, shape.interval, shape.unit)
        if shape.monthdays:
            if len(months) == 1 and len(shape.monthdays) == 1 and shape.monthdays[0] > 0:
                return f"{how}, on {shape.monthdays[0]} {_MONTH_WORDS[months[0] - 1]} {at}"
            day = "on " + day
        if months and months != (1, 4, 7, 10):
            day += f" of {_month_list(months)}"
        return f"{how}, {day} {at}"
    if shape.weekdays:
        days = _weekday_words(shape.weekdays)
        if shape.interval == 2:
            every = f"every other {days}"
        elif shape.interval > 2:
            every = f"every {shape.interval} weeks on {days}"
        else:
            every = f"every {days}"
        return f"{every}{in_months} {at}"
    every = "every day" if shape.interval == 1 else f"every {shape.interval} days"
    return f"{every}{in_months} {at}"


def next_times(cadence: Cadence, tz: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` run times of ``cadence`` from ``after`` (aware, in zone ``tz``)."""
    zoneinfo = zone(tz)
    batch = _run_coroutine(
        _server_schedule(cadence, tz).get_dates(n=count, start=_aware(after, zoneinfo))
    )
    return [datetime.fromtimestamp(d.timestamp(), tz=zoneinfo) for d in batch][:count]


def dst_shift(cadence: Cadence, at: datetime) -> time | None:
    """The wall-clock time a run at ``at`` (aware, local) was meant for, when daylight saving
    moved it: on the spring-forward day a time that does not exist runs one hour earlier.
    None when ``at`` is at one of the cadence's times (or the cadence has no fixed times)."""
    shape = _shape(cadence)
    if shape is None or at.tzinfo is None or at.time().replace(tzinfo=None) in shape.times:
        return None
    for wall in shape.times:
        moved = local_time_on(at.date(), wall, at.tzinfo)
        if moved.time() != wall and moved == at:
            return wall
    return None
