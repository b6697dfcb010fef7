"""Cadences: phrases, cron and RRULEs to run times (as Prefect computes them), blackouts."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from upkeep.domain.cadence import (
    Blackout,
    Cadence,
    CadenceError,
    PlannedRun,
    apply_blackouts,
    blackout_on,
    describe,
    dst_shift,
    next_allowed_day,
    next_times,
    occurrences,
    parse_blackouts,
    parse_cadence,
    planned_runs,
    to_prefect_schedule,
)

TZ = "Europe/Berlin"
BERLIN = ZoneInfo(TZ)


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


YEAR_2027 = (berlin(2027, 1, 1), berlin(2028, 1, 1))


def year_2027(value: object) -> list[datetime]:
    return occurrences(parse_cadence(value), TZ, *YEAR_2027)


# ---------------------------------------------------------------------------------------------
# Phrases to RRULEs


@pytest.mark.parametrize(
    ("phrase", "rrule"),
    [
        (
            "quarterly, first Tuesday, 02:00",
            "FREQ=MONTHLY;BYMONTH=1,4,7,10;BYDAY=+1TU;BYHOUR=2;BYMINUTE=0;BYSECOND=0",
        ),
        (
            "quarterly, day 1, 08:00",
            "FREQ=MONTHLY;BYMONTH=1,4,7,10;BYMONTHDAY=1;BYHOUR=8;BYMINUTE=0;BYSECOND=0",
        ),
        ("monthly, day 15, 03:30", "FREQ=MONTHLY;BYMONTHDAY=15;BYHOUR=3;BYMINUTE=30;BYSECOND=0"),
        ("monthly, last Friday, 18:00", "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=18;BYMINUTE=0;BYSECOND=0"),
        ("monthly, last day, 22:00", "FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=22;BYMINUTE=0;BYSECOND=0"),
        ("monthly, 2nd wed, 4:05", "FREQ=MONTHLY;BYDAY=+2WE;BYHOUR=4;BYMINUTE=5;BYSECOND=0"),
        ("weekly, Monday, 07:00", "FREQ=WEEKLY;BYDAY=MO;BYHOUR=7;BYMINUTE=0;BYSECOND=0"),
        ("Weekly, mon and THU, 07:00", "FREQ=WEEKLY;BYDAY=MO,TH;BYHOUR=7;BYMINUTE=0;BYSECOND=0"),
        ("daily, 06:00", "FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=0"),
        (
            "yearly, January, first Monday, 09:00",
            "FREQ=YEARLY;BYMONTH=1;BYDAY=+1MO;BYHOUR=9;BYMINUTE=0;BYSECOND=0",
        ),
        (
            "annually, dec, day 31, 10:00",
            "FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=31;BYHOUR=10;BYMINUTE=0;BYSECOND=0",
        ),
        (
            "twice a year, March and September, second Wednesday, 10:00",
            "FREQ=YEARLY;BYMONTH=3,9;BYDAY=+2WE;BYHOUR=10;BYMINUTE=0;BYSECOND=0",
        ),
        (
            "  QUARTERLY ,  Fourth   Sunday , 23:59 ",
            "FREQ=MONTHLY;BYMONTH=1,4,7,10;BYDAY=+4SU;BYHOUR=23;BYMINUTE=59;BYSECOND=0",
        ),
    ],
)
def test_phrase_becomes_rrule(phrase: str, rrule: str) -> None:
    cadence = parse_cadence(phrase)
    assert cadence == Cadence(kind="phrase", text=phrase.strip(), rrule=rrule)


def test_cron_and_rrule_forms() -> None:
    cron = parse_cadence({"cron": " 0  1 * * 6 "})
    assert (cron.kind, cron.cron, cron.rrule) == ("cron", "0 1 * * 6", None)
    assert describe(cron) == "every Saturday at 01:00"

    rule = parse_cadence({"rrule": "FREQ=MONTHLY;BYDAY=2TU;BYHOUR=4;BYMINUTE=0"})
    assert rule.kind == "rrule"
    assert rule.rrule == "FREQ=MONTHLY;BYDAY=2TU;BYHOUR=4;BYMINUTE=0;BYSECOND=0"
    assert describe(rule) == "monthly, second Tuesday at 04:00"

    # A prefix, lower case and a trailing semicolon are tolerated.
    same = parse_cadence({"rrule": "RRULE:freq=monthly;byday=2tu;byhour=4;"})
    assert same.rrule == rule.rrule
    assert parse_cadence(rule) is rule


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "quarterly, fifth Tuesday, 02:00",
            "'quarterly, fifth Tuesday, 02:00': "
            "ordinal must be first, second, third, fourth or last",
        ),
        ("daily, 25:00", "bad time '25:00'"),
        ("daily, 12:60", "bad time '12:60'"),
        ("monthly, first Tuesday, 2pm", "bad time '2pm'"),
        ("fortnightly, Monday, 02:00", "unknown frequency 'fortnightly'"),
        ("daily", "the run time is missing"),
        ("monthly, first Tuesday", "the run time is missing"),
        ("weekly, 07:00", "say which weekday"),
        ("weekly, Funday, 07:00", "unknown weekday 'funday'"),
        ("monthly, 02:00", "say which day"),
        ("monthly, day 31, 02:00", "day 31 does not exist in every month"),
        ("monthly, day 0, 02:00", "day 0 does not exist in every month"),
        ("quarterly, day 31, 02:00", "use 1..30, or 'last day'"),
        ("monthly, first Someday, 02:00", "unknown weekday 'someday'"),
        ("monthly, the 15th, 02:00", "cannot read the day 'the 15th'"),
        ("yearly, Smarch, day 1, 09:00", "unknown month 'smarch'"),
        ("yearly, January and June, day 1, 09:00", "names one month"),
        ("twice a year, March, day 1, 09:00", "names two months"),
        ("yearly, January, 09:00", "say which day"),
        ("daily, Monday, 06:00", "unexpected 'monday' for a 'daily' cadence"),
        ("", "empty cadence"),
        (42, "got int"),
        ({"cron": "0 1 * *"}, "invalid cron: it needs 5 fields"),
        ({"cron": "61 1 * * *"}, "invalid cron"),
        ({"cron": "H 1 * * *"}, "invalid cron"),
        ({"cron": ""}, "cron: expected a non-empty string"),
        ({"cron": "0 1 * * *", "rrule": "FREQ=DAILY"}, "exactly one key"),
        ({"schedule": "daily"}, "exactly one key"),
        ({"rrule": "FREQ=MONTHLY;BYHOUR=1;COUNT=4"}, "RRULE must not contain COUNT"),
        ({"rrule": "FREQ=MONTHLY;BYHOUR=1;UNTIL=20281231T000000"}, "must not contain UNTIL"),
        (
            {"rrule": "DTSTART:20270101T000000\nRRULE:FREQ=DAILY;BYHOUR=1"},
            "must not contain DTSTART",
        ),
        ({"rrule": "FREQ=DAILY;BYHOUR=1\nEXDATE:20271224T010000"}, "single RRULE line"),
        ({"rrule": "FREQ=MONTHLY;BYDAY=1MO"}, "BYHOUR (and BYMINUTE) are missing"),
        ({"rrule": "FREQ=HOURLY;BYHOUR=1,2"}, "FREQ=HOURLY is not a contract cadence"),
        ({"rrule": "BYHOUR=1"}, "FREQ is missing"),
        ({"rrule": "FREQ=MONTHLY;BYHOUR=25"}, "invalid RRULE"),
        ({"rrule": "FREQ=MONTHLY;BYDAY=XX;BYHOUR=2"}, "invalid RRULE"),
        ({"rrule": "FREQ=MONTHLY;BYHOUR"}, "cannot read 'BYHOUR'"),
        ({"rrule": "FREQ=DAILY;BYHOUR=1;BYHOUR=2"}, "BYHOUR given twice"),
    ],
)
def test_errors_name_the_problem(value: object, message: str) -> None:
    with pytest.raises(CadenceError) as caught:
        parse_cadence(value)
    assert message in str(caught.value)


def test_unknown_timezone_is_refused() -> None:
    cadence = parse_cadence("daily, 06:00")
    with pytest.raises(CadenceError, match="unknown timezone 'Mars/Olympus'"):
        occurrences(cadence, "Mars/Olympus", *YEAR_2027)
    with pytest.raises(CadenceError, match="unknown timezone"):
        to_prefect_schedule(cadence, "Mars/Olympus")


# ---------------------------------------------------------------------------------------------
# Run times


def test_quarterly_first_tuesday_2027() -> None:
    # 2027-01-01 is a Friday, 04-01 and 07-01 Thursdays, 10-01 a Friday.
    assert year_2027("quarterly, first Tuesday, 02:00") == [
        berlin(2027, 1, 5, 2, 0),
        berlin(2027, 4, 6, 2, 0),
        berlin(2027, 7, 6, 2, 0),
        berlin(2027, 10, 5, 2, 0),
    ]


def test_run_times_are_aware_in_the_contract_zone() -> None:
    times = year_2027("quarterly, first Tuesday, 02:00")
    assert all(t.tzinfo == BERLIN for t in times)
    # Winter and summer time: the same wall clock, different instants.
    assert times[0].astimezone(UTC) == utc(2027, 1, 5, 1, 0)
    assert times[1].astimezone(UTC) == utc(2027, 4, 6, 0, 0)


def test_monthly_last_friday_2027() -> None:
    days = [t.date() for t in year_2027("monthly, last Friday, 18:00")]
    assert days == [
        date(2027, 1, 29),
        date(2027, 2, 26),
        date(2027, 3, 26),
        date(2027, 4, 30),
        date(2027, 5, 28),
        date(2027, 6, 25),
        date(2027, 7, 30),
        date(2027, 8, 27),
        date(2027, 9, 24),
        date(2027, 10, 29),
        date(2027, 11, 26),
        date(2027, 12, 31),
    ]
    assert all((t.hour, t.minute) == (18, 0) for t in year_2027("monthly, last Friday, 18:00"))


def test_other_phrases_2027() -> None:
    assert year_2027("twice a year, March and September, second Wednesday, 10:00") == [
        berlin(2027, 3, 10, 10, 0),
        berlin(2027, 9, 8, 10, 0),
    ]
    assert year_2027("yearly, January, first Monday, 09:00") == [berlin(2027, 1, 4, 9, 0)]
    last_days = year_2027("monthly, last day, 22:00")
    assert [t.day for t in last_days[:3]] == [31, 28, 31]
    assert len(year_2027("daily, 06:00")) == 365
    assert len(year_2027("weekly, Monday and Thursday, 07:00")) == 104


def test_range_is_half_open() -> None:
    cadence = parse_cadence("monthly, day 15, 03:30")
    times = occurrences(cadence, TZ, berlin(2027, 1, 15, 3, 30), berlin(2027, 3, 15, 3, 30))
    assert times == [berlin(2027, 1, 15, 3, 30), berlin(2027, 2, 15, 3, 30)]


def test_cron_and_rrule_run_times() -> None:
    # 0 1 * * 6: Saturdays 01:00; 2027-01-02 is the first Saturday.
    saturdays = year_2027({"cron": "0 1 * * 6"})
    assert saturdays[:2] == [berlin(2027, 1, 2, 1, 0), berlin(2027, 1, 9, 1, 0)]
    assert len(saturdays) == 52
    second_tuesdays = year_2027({"rrule": "FREQ=MONTHLY;BYDAY=2TU;BYHOUR=4;BYMINUTE=0"})
    assert second_tuesdays[:3] == [
        berlin(2027, 1, 12, 4, 0),
        berlin(2027, 2, 9, 4, 0),
        berlin(2027, 3, 9, 4, 0),
    ]


def test_long_ranges_are_not_cut_at_prefects_1000_dates() -> None:
    times = occurrences(parse_cadence("daily, 06:00"), TZ, berlin(2027, 1, 1), berlin(2030, 1, 1))
    assert len(times) == 365 + 366 + 365  # 2028 is a leap year
    assert times[-1] == berlin(2029, 12, 31, 6, 0)


@pytest.mark.parametrize("value", ["weekly, Sunday, 02:30", {"cron": "30 2 * * 0"}])
def test_spring_forward_missing_time_runs_an_hour_early(value: object) -> None:
    # 2027-03-28: Berlin clocks jump from 02:00 CET to 03:00 CEST, so 02:30 does not exist.
    # Prefect reads 02:30 with the summer offset: 00:30 UTC, i.e. 01:30 CET.
    times = occurrences(parse_cadence(value), TZ, berlin(2027, 3, 14), berlin(2027, 4, 12))
    assert [t.astimezone(UTC) for t in times] == [
        utc(2027, 3, 14, 1, 30),
        utc(2027, 3, 21, 1, 30),
        utc(2027, 3, 28, 0, 30),
        utc(2027, 4, 4, 0, 30),
        utc(2027, 4, 11, 0, 30),
    ]
    assert [t.strftime("%H:%M %Z") for t in times] == [
        "02:30 CET",
        "02:30 CET",
        "01:30 CET",
        "02:30 CEST",
        "02:30 CEST",
    ]


@pytest.mark.parametrize("value", ["weekly, Sunday, 02:30", {"cron": "30 2 * * 0"}])
def test_fall_back_repeated_time_runs_once_at_first_occurrence(value: object) -> None:
    # 2027-10-31: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice; Prefect runs the first.
    times = occurrences(parse_cadence(value), TZ, berlin(2027, 10, 17), berlin(2027, 11, 12))
    assert [t.astimezone(UTC) for t in times] == [
        utc(2027, 10, 17, 0, 30),
        utc(2027, 10, 24, 0, 30),
        utc(2027, 10, 31, 0, 30),
        utc(2027, 11, 7, 1, 30),
    ]
    assert [t.strftime("%H:%M %Z") for t in times] == [
        "02:30 CEST",
        "02:30 CEST",
        "02:30 CEST",
        "02:30 CET",
    ]


def test_occurrences_works_inside_a_running_event_loop() -> None:
    async def in_loop() -> list[datetime]:
        return year_2027("quarterly, first Tuesday, 02:00")

    assert asyncio.run(in_loop()) == year_2027("quarterly, first Tuesday, 02:00")


# ---------------------------------------------------------------------------------------------
# Prefect schedules


@pytest.mark.parametrize(
    "value",
    [
        "quarterly, first Tuesday, 02:00",
        "weekly, Sunday, 02:30",
        {"cron": "0 1 * * 6"},
        {"rrule": "FREQ=MONTHLY;BYDAY=2TU;BYHOUR=4;BYMINUTE=0"},
    ],
)
def test_to_prefect_schedule_and_agreement_with_what_prefect_stores(value: object) -> None:
    from prefect import flow
    from prefect.schedules import Schedule
    from prefect.server.schemas.schedules import CronSchedule, RRuleSchedule

    cadence = parse_cadence(value)
    schedule = to_prefect_schedule(cadence, TZ)
    assert isinstance(schedule, Schedule)
    assert schedule.timezone == TZ
    assert (schedule.rrule, schedule.cron) == (cadence.rrule, cadence.cron)

    @flow
    def maintenance() -> None:
        pass

    # What a deployment would send to the server (the client may add a DTSTART).
    deployment: Any = maintenance.to_deployment(name="cadence-test", schedules=[schedule])
    stored: Any = deployment.schedules[0].schedule
    server: CronSchedule | RRuleSchedule
    if cadence.cron is not None:
        server = CronSchedule(cron=stored.cron, timezone=stored.timezone)
    else:
        server = RRuleSchedule(rrule=stored.rrule, timezone=stored.timezone)
    start, end = berlin(2027, 1, 1), berlin(2028, 1, 1)
    expected = [
        d
        for d in asyncio.run(server.get_dates(n=1000, start=start, end=end))
        if d < end  # Prefect's end is inclusive
    ]
    assert occurrences(cadence, TZ, start, end) == expected


# ---------------------------------------------------------------------------------------------
# Blackouts


CHRISTMAS = Blackout(date(2027, 12, 24), date(2027, 12, 31), "Christmas freeze")


def test_blackout_lookups() -> None:
    single = Blackout(date(2027, 5, 1), date(2027, 5, 1), "Labour Day")
    blackouts = [single, CHRISTMAS]
    assert blackout_on(date(2027, 5, 1), blackouts) is single
    assert blackout_on(date(2027, 12, 27), blackouts) is CHRISTMAS
    assert blackout_on(date(2027, 5, 2), blackouts) is None
    assert next_allowed_day(date(2027, 5, 1), blackouts) == date(2027, 5, 2)
    assert next_allowed_day(date(2027, 5, 2), blackouts) == date(2027, 5, 2)
    assert next_allowed_day(date(2027, 12, 24), blackouts) == date(2028, 1, 1)
    # Back-to-back blackouts are passed in one go; weekends are allowed days.
    chained = [CHRISTMAS, Blackout(date(2028, 1, 1), date(2028, 1, 1), "New Year")]
    assert next_allowed_day(date(2027, 12, 25), chained) == date(2028, 1, 2)
    with pytest.raises(CadenceError, match="the start is after the end"):
        Blackout(date(2027, 5, 2), date(2027, 5, 1))


def test_blackout_moves_run_to_next_day_at_same_local_time() -> None:
    times = [berlin(2027, 1, 29, 18, 0), berlin(2027, 2, 26, 18, 0)]
    blackouts = [Blackout(date(2027, 1, 29), date(2027, 1, 29), "stocktaking")]
    assert apply_blackouts(times, blackouts, "next_allowed_day") == [
        PlannedRun(
            at=berlin(2027, 1, 30, 18, 0),
            original=berlin(2027, 1, 29, 18, 0),
            moved=True,
            reason="stocktaking",
        ),
        PlannedRun(at=berlin(2027, 2, 26, 18, 0), original=berlin(2027, 2, 26, 18, 0)),
    ]


def test_multi_day_freeze_moves_run_past_the_freeze() -> None:
    freeze = [Blackout(date(2027, 4, 1), date(2027, 4, 9), "release freeze")]
    runs = planned_runs(
        parse_cadence("quarterly, first Tuesday, 02:00"),
        TZ,
        freeze,
        "next_allowed_day",
        *YEAR_2027,
    )
    moved = [r for r in runs if r.moved]
    assert moved == [
        PlannedRun(
            at=berlin(2027, 4, 10, 2, 0),
            original=berlin(2027, 4, 6, 2, 0),
            moved=True,
            reason="release freeze",
        )
    ]
    assert [r.at for r in runs] == [
        berlin(2027, 1, 5, 2, 0),
        berlin(2027, 4, 10, 2, 0),
        berlin(2027, 7, 6, 2, 0),
        berlin(2027, 10, 5, 2, 0),
    ]


def test_skip_policy_drops_the_run() -> None:
    runs = planned_runs(
        parse_cadence("monthly, last Friday, 18:00"), TZ, [CHRISTMAS], "skip", *YEAR_2027
    )
    assert len(runs) == 12
    skipped = [r for r in runs if r.skipped]
    assert skipped == [
        PlannedRun(
            at=berlin(2027, 12, 31, 18, 0),
            original=berlin(2027, 12, 31, 18, 0),
            skipped=True,
            reason="Christmas freeze",
        )
    ]
    assert not any(r.moved for r in runs)


def test_moved_runs_landing_on_the_same_time_are_not_doubled() -> None:
    # Both Fridays of the freeze (24th and 31st) would move to 2028-01-01 18:00.
    runs = planned_runs(
        parse_cadence("weekly, Friday, 18:00"),
        TZ,
        [CHRISTMAS],
        "next_allowed_day",
        berlin(2027, 12, 1),
        berlin(2028, 1, 1),
    )
    moved = [r for r in runs if r.moved]
    merged = [r for r in runs if r.skipped]
    assert moved == [
        PlannedRun(
            at=berlin(2028, 1, 1, 18, 0),
            original=berlin(2027, 12, 24, 18, 0),
            moved=True,
            reason="Christmas freeze",
        )
    ]
    assert [r.original for r in merged] == [berlin(2027, 12, 31, 18, 0)]
    assert merged[0].reason is not None and "merged" in merged[0].reason


def test_run_moved_onto_a_regular_run_is_merged() -> None:
    blackouts = [Blackout(date(2027, 3, 1), date(2027, 3, 1), "audit")]
    runs = apply_blackouts(
        [berlin(2027, 3, 1, 6, 0), berlin(2027, 3, 2, 6, 0)], blackouts, "next_allowed_day"
    )
    assert [(r.at, r.skipped, r.moved) for r in runs] == [
        (berlin(2027, 3, 1, 6, 0), True, False),
        (berlin(2027, 3, 2, 6, 0), False, False),
    ]


def test_moving_keeps_wall_clock_across_dst() -> None:
    # Moved from summer time into winter time: still 09:00 local.
    blackouts = [Blackout(date(2027, 10, 30), date(2027, 10, 31), "data centre move")]
    (run,) = apply_blackouts([berlin(2027, 10, 30, 9, 0)], blackouts, "next_allowed_day")
    assert run.at == berlin(2027, 11, 1, 9, 0)
    assert run.at.strftime("%H:%M %Z") == "09:00 CET"
    assert run.original.strftime("%H:%M %Z") == "09:00 CEST"


def test_moving_onto_the_spring_forward_day_matches_prefect() -> None:
    # 02:30 does not exist on 2027-03-28; a moved run gets the time Prefect's own slot gets.
    blackouts = [Blackout(date(2027, 3, 27), date(2027, 3, 27), "maintenance window")]
    (run,) = apply_blackouts([berlin(2027, 3, 27, 2, 30)], blackouts, "next_allowed_day")
    (prefect_slot,) = occurrences(
        parse_cadence("weekly, Sunday, 02:30"), TZ, berlin(2027, 3, 28), berlin(2027, 3, 29)
    )
    assert run.at == prefect_slot
    assert run.at.astimezone(UTC) == utc(2027, 3, 28, 0, 30)


def test_blackout_before_the_range_moves_runs_into_it() -> None:
    # Monday 2026-12-28 is in a freeze lasting into 2027: its run belongs to the 2027 plan.
    freeze = [Blackout(date(2026, 12, 23), date(2027, 1, 6), "year-end freeze")]
    runs = planned_runs(
        parse_cadence("weekly, Monday, 07:00"), TZ, freeze, "next_allowed_day", *YEAR_2027
    )
    assert runs[0] == PlannedRun(
        at=berlin(2027, 1, 4, 7, 0),
        original=berlin(2027, 1, 4, 7, 0),
        skipped=True,
        reason="year-end freeze; merged into the run already planned at that time",
    )
    assert runs[1] == PlannedRun(
        at=berlin(2027, 1, 7, 7, 0),
        original=berlin(2026, 12, 28, 7, 0),
        moved=True,
        reason="year-end freeze",
    )
    assert runs[2].at == berlin(2027, 1, 11, 7, 0)


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(CadenceError, match="unknown blackout policy 'postpone'"):
        apply_blackouts([], [], "postpone")


def test_parse_blackouts() -> None:
    assert parse_blackouts(
        [
            "2027-12-24",
            date(2027, 5, 1),
            {"from": "2027-08-02", "to": date(2027, 8, 13), "reason": " summer shutdown "},
            {"from": "2027-10-03", "reason": "German Unity Day"},
        ]
    ) == [
        Blackout(date(2027, 5, 1), date(2027, 5, 1)),
        Blackout(date(2027, 8, 2), date(2027, 8, 13), "summer shutdown"),
        Blackout(date(2027, 10, 3), date(2027, 10, 3), "German Unity Day"),
        Blackout(date(2027, 12, 24), date(2027, 12, 24)),
    ]
    assert parse_blackouts(None) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([{"from": "2027-12-31", "to": "2027-12-24"}], "from 2027-12-31 is after to 2027-12-24"),
        (["2027-02-30"], "bad date '2027-02-30'"),
        (["24.12.2027"], "bad date '24.12.2027'"),
        ([datetime(2027, 12, 24, 10, 0)], "a blackout is whole days"),
        ([{"to": "2027-12-24"}], "'from' is missing"),
        ([{"from": "2027-12-24", "until": "2027-12-26"}], "unknown keys ['until']"),
        ([{"from": "2027-12-24", "reason": 5}], "reason: expected text"),
        ([1], "expected a date"),
        ("2027-12-24", "expected a list"),
    ],
)
def test_parse_blackouts_errors(value: object, message: str) -> None:
    with pytest.raises(CadenceError) as caught:
        parse_blackouts(value)
    assert message in str(caught.value)


def test_planned_runs_without_blackouts_are_the_occurrences() -> None:
    cadence = parse_cadence("monthly, day 15, 03:30")
    runs = planned_runs(cadence, TZ, [], "next_allowed_day", *YEAR_2027)
    assert [r.at for r in runs] == occurrences(cadence, TZ, *YEAR_2027)
    assert not any(r.moved or r.skipped for r in runs)
    assert all(r.at - r.original == timedelta(0) for r in runs)


# --- in words ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "words"),
    [
        ("quarterly, first Tuesday, 02:00", "quarterly, first Tuesday at 02:00"),
        ("  QUARTERLY ,  Fourth   Sunday , 23:59 ", "quarterly, fourth Sunday at 23:59"),
        ("quarterly, day 1, 08:00", "quarterly, on day 1 at 08:00"),
        ("monthly, day 15, 03:30", "monthly, on day 15 at 03:30"),
        ("monthly, last Friday, 18:00", "monthly, last Friday at 18:00"),
        ("monthly, last day, 22:00", "monthly, on the last day at 22:00"),
        ("weekly, Monday, 07:00", "every Monday at 07:00"),
        ("Weekly, mon and THU, 07:00", "every Monday and Thursday at 07:00"),
        ("daily, 06:00", "every day at 06:00"),
        ("yearly, January, first Monday, 09:00", "yearly, first Monday of January at 09:00"),
        ("annually, dec, day 31, 10:00", "yearly, on 31 December at 10:00"),
        (
            "twice a year, March and September, second Wednesday, 10:00",
            "twice a year, second Wednesday of March and September at 10:00",
        ),
        ({"cron": "0 1 * * 6"}, "every Saturday at 01:00"),
        ({"cron": "0 1 * * sat"}, "every Saturday at 01:00"),
        ({"cron": "30 2 * * *"}, "every day at 02:30"),
        ({"cron": "0 2 * * 1-5"}, "every weekday (Monday to Friday) at 02:00"),
        ({"cron": "0 3 * * 6,0"}, "every Saturday and Sunday at 03:00"),
        ({"cron": "0 2 * 1,4,7,10 2#1"}, "quarterly, first Tuesday at 02:00"),
        ({"cron": "0 2 1 */3 *"}, "quarterly, on day 1 at 02:00"),
        ({"cron": "0 4 L * *"}, "monthly, on the last day at 04:00"),
        ({"cron": "0 4 1,15 * *"}, "monthly, on days 1 and 15 at 04:00"),
        ({"cron": "0 3 * jan,jul mon"}, "every Monday in January and July at 03:00"),
        ({"cron": "15 6,18 * * *"}, "every day at 06:15 and 18:15"),
        ({"rrule": "FREQ=MONTHLY;BYDAY=2TU;BYHOUR=4"}, "monthly, second Tuesday at 04:00"),
        (
            {"rrule": "FREQ=MONTHLY;BYMONTH=1,4,7,10;BYDAY=+1TU;BYHOUR=2"},
            "quarterly, first Tuesday at 02:00",
        ),
        ({"rrule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=SA;BYHOUR=1"}, "every other Saturday at 01:00"),
        (
            {"rrule": "FREQ=MONTHLY;BYDAY=+1MO,+3MO;BYHOUR=1"},
            "monthly, first and third Monday at 01:00",
        ),
        (
            {"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-1;BYHOUR=5"},
            "yearly, on the last day of February at 05:00",
        ),
    ],
)
def test_cadences_read_in_words(written: object, words: str) -> None:
    assert describe(parse_cadence(written)) == words


def test_phrases_cron_and_rrules_of_one_shape_read_the_same() -> None:
    shapes = [
        "weekly, Saturday, 01:00",
        {"cron": "0 1 * * 6"},
        {"rrule": "FREQ=WEEKLY;BYDAY=SA;BYHOUR=1;BYMINUTE=0"},
    ]
    assert {describe(parse_cadence(s)) for s in shapes} == {"every Saturday at 01:00"}


@pytest.mark.parametrize(
    "written",
    [
        {"cron": "*/15 * * * *"},
        {"cron": "0 2 13 * 5"},  # the 13th or a Friday: cron's either-or
        {"rrule": "FREQ=MONTHLY;BYDAY=MO,TU;BYSETPOS=1;BYHOUR=1"},
        {"rrule": "FREQ=MONTHLY;BYHOUR=1"},  # the day the rule was anchored on
    ],
)
def test_untranslatable_cadences_say_custom_and_list_the_next_runs(written: object) -> None:
    cadence = parse_cadence(written)
    assert describe(cadence) == "on a custom schedule"
    after = datetime(2026, 12, 1, tzinfo=ZoneInfo("Europe/Berlin"))
    words = describe(cadence, "Europe/Berlin", after)
    expected = ", ".join(
        f"{t:%Y-%m-%d %H:%M}" for t in next_times(cadence, "Europe/Berlin", after, 3)
    )
    assert words == f"on a custom schedule (next: {expected})"
    assert len(next_times(cadence, "Europe/Berlin", after, 3)) == 3
    raw = cadence.cron or cadence.rrule
    assert raw is not None and raw not in words and "FREQ" not in words


def test_custom_schedule_lists_the_next_runs_in_the_contracts_timezone() -> None:
    cadence = parse_cadence({"cron": "0 2 13 * 5"})
    words = describe(cadence, "Europe/Berlin", datetime(2026, 12, 1, tzinfo=UTC))
    assert (
        words == "on a custom schedule (next: 2026-12-04 02:00, 2026-12-11 02:00, 2026-12-13 02:00)"
    )


def test_dst_shift_names_the_time_a_spring_forward_run_was_meant_for() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    cadence = parse_cadence("daily, 02:30")
    (moved,) = [
        t
        for t in occurrences(cadence, "Europe/Berlin", datetime(2027, 3, 27), datetime(2027, 3, 30))
        if t.date() == date(2027, 3, 28)
    ]
    assert moved == datetime(2027, 3, 28, 1, 30, tzinfo=berlin)
    assert dst_shift(cadence, moved) == time(2, 30)
    assert dst_shift(cadence, datetime(2027, 3, 29, 2, 30, tzinfo=berlin)) is None
    # Fall back: 02:30 exists twice and runs once, at its time: nothing moved.
    assert dst_shift(cadence, datetime(2026, 10, 25, 2, 30, tzinfo=berlin)) is None
    assert dst_shift(parse_cadence({"cron": "30 2 * * 0"}), moved) == time(2, 30)


def test_a_custom_schedule_that_never_comes_round_says_so() -> None:
    cadence = parse_cadence({"cron": "0 0 30 2 *"})  # 30 February
    words = describe(cadence, "Europe/Berlin", datetime(2026, 12, 1, tzinfo=UTC))
    assert words == "on a custom schedule (next: none)"
