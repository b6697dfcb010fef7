"""The effect report's pure parts: the periods, each figure's verdict within its tolerance,
periods without probes or readings said honestly, outages and findings compared per day, and
the headline."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from upkeep.domain.interfaces import Sample
from upkeep.domain.release_effect import (
    CheckEffect,
    OpenedFinding,
    SyslogReading,
    assess,
    compare_check,
    compare_findings,
    compare_syslog,
    effect_periods,
    overall,
)

WINDOW = datetime(2026, 11, 10, 21, 0, tzinfo=UTC)
FINISHED = WINDOW + timedelta(minutes=40)
LATER = FINISHED + timedelta(days=5)
PERIODS = effect_periods(WINDOW, FINISHED, 3, LATER)


def probes(
    start: datetime, latencies: list[float | None], failing: Collection[int] = ()
) -> list[Sample]:
    """One probe an hour from ``start``; those at the indexes in ``failing`` failed."""
    return [
        Sample(start + timedelta(hours=i), i not in failing, None if i in failing else ms)
        for i, ms in enumerate(latencies)
    ]


BEFORE = PERIODS.before_start + timedelta(hours=1)
AFTER = PERIODS.after_start + timedelta(hours=1)


def by_figure(effect: CheckEffect) -> dict[str, tuple[str, str, str]]:
    return {c.figure: (c.before, c.after, c.verdict) for c in effect.comparisons}


def test_the_periods_end_at_the_window_and_start_when_the_release_finished() -> None:
    assert PERIODS.before_start == WINDOW - timedelta(days=3) and PERIODS.before_end == WINDOW
    assert PERIODS.after_start == FINISHED and PERIODS.after_end == FINISHED + timedelta(days=3)
    assert PERIODS.after_complete and PERIODS.before_days == PERIODS.after_days == 3
    early = effect_periods(WINDOW, FINISHED, 3, FINISHED + timedelta(days=1, hours=12))
    assert not early.after_complete and early.after_days == 1.5


def test_slower_and_failing_after_the_release_is_worse() -> None:
    effect = compare_check(
        "shop/health",
        probes(BEFORE, [100.0] * 10),
        probes(AFTER, [300.0] * 10, failing={4, 5}),
        PERIODS,
    )
    figures = by_figure(effect)
    assert figures["availability"] == ("100.0%", "80.0%", "worse")
    assert figures["median response time"] == ("100 ms", "300 ms", "worse")
    assert figures["95th percentile response time"] == ("100 ms", "300 ms", "worse")
    assert figures["outages"] == ("0 in 3 days", "1 in 3 days", "worse")
    assert effect.verdict == "worse" and effect.note == ""
    texts = [c.text for c in effect.comparisons]
    assert "availability fell from 100.0% to 80.0%: worse" in texts
    assert effect.after.outages[0].probes == 2 and effect.after.outages[0].end is not None


def test_faster_and_steadier_after_the_release_is_better() -> None:
    effect = compare_check(
        "shop/health",
        probes(BEFORE, [400.0] * 10, failing={2, 7}),
        probes(AFTER, [120.0] * 10),
        PERIODS,
    )
    figures = by_figure(effect)
    assert figures["availability"] == ("80.0%", "100.0%", "better")
    assert figures["median response time"][2] == "better"
    assert figures["outages"] == ("2 in 3 days", "0 in 3 days", "better")
    assert effect.verdict == "better"


def test_small_moves_are_the_same_within_the_tolerance() -> None:
    effect = compare_check(
        "shop/health",
        probes(BEFORE, [100.0] * 200, failing={0}),  # 99.5% available
        probes(AFTER, [108.0] * 200),  # +8 ms: within 10 ms / 10%
        PERIODS,
    )
    figures = by_figure(effect)
    assert figures["availability"] == ("99.5%", "100.0%", "same")
    assert figures["median response time"] == ("100 ms", "108 ms", "same")
    # 10% of a slow interface is more than the 10 ms floor
    slow = compare_check(
        "shop/report", probes(BEFORE, [2000.0] * 5), probes(AFTER, [2150.0] * 5), PERIODS
    )
    assert by_figure(slow)["median response time"][2] == "same"
    slower = compare_check(
        "shop/report", probes(BEFORE, [2000.0] * 5), probes(AFTER, [2300.0] * 5), PERIODS
    )
    assert by_figure(slower)["median response time"][2] == "worse"


def test_no_probes_before_says_the_monitor_was_not_running_and_divides_by_nothing() -> None:
    effect = compare_check("shop/search", [], probes(AFTER, [50.0] * 3), PERIODS)
    figures = by_figure(effect)
    assert {v for _, _, v in figures.values()} == {"not measured"}
    assert figures["availability"] == ("not measured", "100.0%", "not measured")
    assert "no probe of shop/search in the 3 days before the release" in effect.note
    assert "monitor was not running" in effect.note
    assert effect.verdict == "not measured"
    nothing = compare_check("shop/search", [], [], PERIODS)
    assert "before" in nothing.note and "after" in nothing.note
    assert by_figure(nothing)["outages"] == ("not measured", "not measured", "not measured")


def test_only_failed_probes_give_availability_but_no_response_time() -> None:
    effect = compare_check(
        "shop/health", probes(BEFORE, [90.0] * 4), probes(AFTER, [None] * 4, {0, 1, 2, 3}), PERIODS
    )
    figures = by_figure(effect)
    assert figures["availability"] == ("100.0%", "0.0%", "worse")
    median = next(c for c in effect.comparisons if c.figure == "median response time")
    assert median.verdict == "not measured" and median.text == "no probe passed after the release"
    assert figures["outages"] == ("0 in 3 days", "1 in 3 days", "worse")


def test_outages_and_findings_are_compared_per_day_when_the_after_period_is_short() -> None:
    early = effect_periods(WINDOW, FINISHED, 3, FINISHED + timedelta(days=1))
    one = OpenedFinding("app1", "disk", "/", "major", "disk 91% full", BEFORE)
    after = OpenedFinding("app1", "syslog", "system log", "minor", "3 errors", AFTER)
    # 2 in 3 days before, 1 in the 1 day after: more per day
    found = compare_findings([one, one], [after], early)
    assert (found.comparison.before, found.comparison.after) == ("2 in 3 days", "1 in 1 day")
    assert found.comparison.verdict == "worse"
    same = compare_findings([one, one, one], [after], early)
    assert same.comparison.verdict == "same"
    none = compare_findings([one], [], PERIODS)
    assert none.comparison.verdict == "better"
    nothing_yet = compare_findings([one], [], effect_periods(WINDOW, FINISHED, 3, FINISHED))
    assert nothing_yet.comparison.verdict == "not measured"


def test_system_log_errors_from_readings_or_not_measured() -> None:
    def reading(count: int, at: datetime, host: str = "app1") -> SyslogReading:
        return SyslogReading(host, at, count, "journal", window_hours=24)

    worse = compare_syslog([reading(2, BEFORE)], [reading(12, AFTER), reading(10, AFTER, "app2")])
    assert worse.comparison.verdict == "worse"
    assert (worse.comparison.before, worse.comparison.after) == ("2 per reading", "11 per reading")
    assert "inspection records" in worse.source
    assert worse.after[0].covers == "the journal over the 24 h before the inspection"
    same = compare_syslog([reading(40, BEFORE)], [reading(43, AFTER)])  # within 10%
    assert same.comparison.verdict == "same"
    unmeasured = compare_syslog([reading(2, BEFORE)], [])
    assert unmeasured.comparison.verdict == "not measured"
    assert unmeasured.comparison.after == "not measured"
    assert "no inspection read the hosts' system logs in the after period" in (
        unmeasured.comparison.text
    )
    file = SyslogReading("app1", AFTER, 3, "file", path="/var/log/syslog")
    assert file.covers == "the last lines of /var/log/syslog (no time window)"


def test_overall_verdict_worse_wins_then_better_then_same() -> None:
    assert overall(["same", "better", "not measured"]) == "better"
    assert overall(["better", "worse"]) == "worse"
    assert overall(["same", "not measured"]) == "same"
    assert overall(["not measured"]) == overall([]) == "not measured"


def test_the_headline_names_what_got_worse() -> None:
    report = assess(
        contract="ACME",
        system="shop",
        version="2.0",
        status="released",
        periods=PERIODS,
        samples={
            "shop/health": (probes(BEFORE, [100.0] * 6), probes(AFTER, [100.0] * 6, {3})),
            "shop/search": ([], probes(AFTER, [80.0] * 3)),
        },
        findings_before=[],
        findings_after=[],
        syslog_before=[],
        syslog_after=[],
    )
    assert report.verdict == "worse"
    assert report.headline == (
        "Effect of shop 2.0 (ACME): WORSE after the release: shop/health availability, "
        "shop/health outages"
    )
    assert report.notes == ()
    calm = assess(
        contract="ACME",
        system="shop",
        version="2.0",
        status="released",
        periods=effect_periods(WINDOW, FINISHED, 3, FINISHED + timedelta(hours=12)),
        samples={"shop/health": (probes(BEFORE, [100.0] * 6), probes(AFTER, [101.0] * 6))},
        findings_before=[],
        findings_after=[],
        syslog_before=[],
        syslog_after=[],
    )
    assert calm.headline == "Effect of shop 2.0 (ACME): no change in the key figures"
    assert calm.notes == ("the after period is not over yet: 0.5 days of 3 days so far "
                          "(counts are compared per day)",)  # fmt: skip
    blind = assess(
        contract="ACME",
        system="shop",
        version="2.0",
        status="rolled-back",
        periods=effect_periods(WINDOW, FINISHED, 3, FINISHED),
        samples={},
        findings_before=[],
        findings_after=[],
        syslog_before=[],
        syslog_after=[],
    )
    assert blind.verdict == "not measured"
    assert blind.headline.endswith("nothing to compare (no figure was measured before and after)")
    assert "system shop has no smoke check: no interface figures" in blind.notes
