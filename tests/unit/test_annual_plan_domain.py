"""The annual plan from a contract's cadences and blackouts, on plain values."""

from __future__ import annotations

from datetime import date

from upkeep.domain.annual_plan import plan_for_year, plan_summary

CADENCES = {
    "inspection": "quarterly, first Tuesday, 02:00",
    "recheck": "monthly, day 15, 03:30",
    "service_report": "monthly, first Monday, 08:00",
}
BLACKOUTS = [
    "2027-01-05",
    {"from": "2027-12-20", "to": "2028-01-06", "reason": "customer year-end freeze"},
]


def plan(policy: str = "next_allowed_day"):  # type: ignore[no-untyped-def]
    return plan_for_year(
        customer_name="ACME GmbH",
        contract_code="ACME-OPS",
        contract_name="ACME operations",
        timezone="Europe/Berlin",
        cadences=CADENCES,
        blackouts=BLACKOUTS,
        policy=policy,
        year=2027,
    )


def test_every_run_of_the_year_in_time_order_blackouts_moving_them() -> None:
    p = plan()
    assert [i.at for i in p.items] == sorted(i.at for i in p.items)
    assert all(i.at.year == 2027 or i.moved for i in p.items)
    first = next(i for i in p.items if i.process == "inspection")
    assert first.moved and first.original.date() == date(2027, 1, 5)
    assert first.at.date() == date(2027, 1, 6) and first.at.hour == 2
    assert len(p.blackouts) == 2


def test_summary_counts_runs_by_title_without_skipped_ones() -> None:
    assert plan_summary(plan()) == {
        "Health inspection": 4,
        "Re-check of open findings": 12,
        "Service report": 12,
    }
    skipped = plan_summary(plan("skip"))
    # the inspection of 5 Jan falls on a blackout day: skipped, not counted
    assert skipped["Health inspection"] == 3
    assert skipped["Re-check of open findings"] == 12
