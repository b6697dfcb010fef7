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
    "local_time_on",
    "next_allowed_day",
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
    from prefect._internal.schemas.validators import validate_cron_string

    cron = " ".join(text.split())
    if len(cron.split(" ")) != 5:
        raise _fail(text, "invalid cron: it needs 5 fields (minute hour day month weekday)")
    try:
        validate_cron_string(cron)
    except ValueError as exc:
        raise _fail(text, f"invalid cron: {exc}") from None
    return cron


def _normalise_rrule(text: str) -> str:
    import dateutil.rrule

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


def describe(cadence: Cadence) -> str:
    """How to show the cadence to people: the phrase as written, ``cron …`` or ``rrule …``."""
    if cadence.kind == "phrase":
        return cadence.text
    if cadence.kind == "cron":
        return f"cron {cadence.cron}"
    return f"rrule {cadence.rrule}"


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
    from prefect.server.schemas.schedules import CronSchedule, RRuleSchedule

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
    from prefect.schedules import Cron, RRule

    zone(tz)
    if cadence.cron is not None:
        return Cron(cadence.cron, timezone=tz)
    if cadence.rrule is not None:
        return RRule(cadence.rrule, timezone=tz)
    raise CadenceError(f"{cadence.text!r}: neither an RRULE nor a cron expression")
