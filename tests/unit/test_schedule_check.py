"""``upkeep serve``'s check that the Prefect server schedules what it serves (pure parts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from upkeep.deployments.health import HORIZON, ScheduleCheck, expected_runs, schedule_gaps

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def test_no_gap_when_every_expected_deployment_has_a_run() -> None:
    expected = {"inspection/acme": NOW, "approval-watchdog/upkeep": NOW}
    assert schedule_gaps(expected, {"inspection/acme": 3, "approval-watchdog/upkeep": 1}) == []


def test_gaps_name_the_deployments_without_runs_soonest_first() -> None:
    expected = {
        "service-report/acme": NOW + timedelta(days=20),
        "approval-watchdog/upkeep": NOW + timedelta(minutes=5),
        "inspection/acme": NOW + timedelta(days=3),
    }
    found = {"inspection/acme": 2}
    assert schedule_gaps(expected, found) == ["approval-watchdog/upkeep", "service-report/acme"]
    check = ScheduleCheck(expected, found)
    assert not check.ok and check.missing == schedule_gaps(expected, found)


def test_a_deployment_never_seen_counts_as_without_runs() -> None:
    assert schedule_gaps({"recheck/acme": NOW}, {}) == ["recheck/acme"]


def test_expected_runs_leave_out_cadences_beyond_the_servers_horizon_and_manual_ones() -> None:
    specs = [
        ("inspection/acme", {"cron": "0 2 * * *"}, "Europe/Berlin"),
        ("annual-plan/acme", "yearly, January, first Monday, 09:00", "Europe/Berlin"),
        ("recheck/acme", None, "Europe/Berlin"),
    ]
    # In early December the annual plan is due in January: within the horizon.
    got = expected_runs(specs, {"approval-watchdog/upkeep": timedelta(minutes=5)}, NOW)
    assert set(got) == {"inspection/acme", "annual-plan/acme", "approval-watchdog/upkeep"}
    assert got["inspection/acme"] == datetime(
        2026, 12, 3, 2, 0, tzinfo=got["inspection/acme"].tzinfo
    )
    assert got["approval-watchdog/upkeep"] == NOW + timedelta(minutes=5)
    # In February the next annual plan is eleven months away: the server schedules nothing yet.
    february = datetime(2027, 2, 1, tzinfo=UTC)
    later = expected_runs(specs, {}, february)
    assert "annual-plan/acme" not in later
    assert all(when - february <= HORIZON for when in later.values())
