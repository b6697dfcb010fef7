"""What a scheduled run does on a blackout day (the pure decision)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from upkeep.domain.cadence import Blackout
from upkeep.flows.blackout import decide

BERLIN = ZoneInfo("Europe/Berlin")
FREEZE = [
    Blackout(date(2027, 12, 20), date(2028, 1, 6), "year-end freeze"),
    Blackout(date(2027, 3, 27), date(2027, 3, 27), "migration weekend"),
]


def test_an_ordinary_day_runs() -> None:
    assert decide(datetime(2027, 12, 15, 3, 30, tzinfo=BERLIN), FREEZE, "next_allowed_day") is None


def test_a_blackout_day_moves_to_the_next_allowed_day_same_local_time() -> None:
    slot = datetime(2027, 12, 24, 2, 0, tzinfo=BERLIN)
    decision = decide(slot, FREEZE, "next_allowed_day")
    assert decision is not None and decision.move_to is not None
    assert decision.move_to == datetime(2028, 1, 7, 2, 0, tzinfo=BERLIN)
    assert decision.message(slot) == (
        "moved to 2028-01-07 02:00 CET: 2027-12-24 is a blackout day (year-end freeze)"
    )


def test_moving_across_the_change_to_summer_time_keeps_the_wall_clock() -> None:
    slot = datetime(2027, 3, 27, 2, 30, tzinfo=BERLIN)  # CET; the next day 02:30 does not exist
    decision = decide(slot, FREEZE, "next_allowed_day")
    assert decision is not None and decision.move_to is not None
    # As Prefect resolves a time that does not exist: an hour earlier, in summer time.
    assert decision.move_to.strftime("%Y-%m-%d %H:%M %Z") == "2027-03-28 01:30 CET"


def test_skip_policy_skips() -> None:
    slot = datetime(2027, 12, 24, 2, 0, tzinfo=BERLIN)
    decision = decide(slot, FREEZE, "skip")
    assert decision is not None and decision.move_to is None
    assert decision.message(slot).startswith("skipped: 2027-12-24 is a blackout day")
