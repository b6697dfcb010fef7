"""The annual service plan of a contract, pure: every planned run of a year from its cadences,
after its blackouts and blackout policy, and how many of each process."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from upkeep.domain.cadence import describe, parse_blackouts, parse_cadence, planned_runs
from upkeep.domain.calendar import AnnualPlan, plan_items
from upkeep.domain.processes import TITLES


def plan_for_year(
    *,
    customer_name: str,
    contract_code: str,
    contract_name: str,
    timezone: str,
    cadences: Mapping[str, Any],
    blackouts: object,
    policy: Any,
    year: int,
) -> AnnualPlan:
    """The plan for ``year``: each process's runs (``cadences``: process key -> cadence as
    written) in the contract's ``timezone``, moved or skipped by ``blackouts`` per ``policy``,
    in time order."""
    tz = ZoneInfo(timezone)
    start = datetime(year, 1, 1, tzinfo=tz)
    end = datetime(year + 1, 1, 1, tzinfo=tz)
    parsed = parse_blackouts(blackouts)
    items = []
    for process, written in sorted(cadences.items()):
        cadence = parse_cadence(written)
        runs = planned_runs(cadence, timezone, parsed, policy, start, end)
        items += plan_items(
            runs,
            process=process,
            title=TITLES.get(process, process),
            cadence_text=describe(cadence),
        )
    items.sort(key=lambda i: i.at)
    return AnnualPlan(
        customer_name=customer_name,
        contract_code=contract_code,
        contract_name=contract_name,
        year=year,
        timezone=timezone,
        items=items,
        blackouts=parsed,
    )


def plan_summary(plan: AnnualPlan) -> dict[str, int]:
    """How many runs of each process (by title) the plan has, skipped ones not counted."""
    counts: dict[str, int] = {}
    for item in plan.items:
        if not item.skipped:
            counts[item.title] = counts.get(item.title, 0) + 1
    return counts
