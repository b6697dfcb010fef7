"""Blackout days for scheduled runs: move the run to the next allowed day, or skip it.

Prefect's schedule puts runs on the cadence's slots; a contract's blackout days (public
holidays, freeze periods) are applied when such a run starts: the run ends at once as
*Cancelled* with the reason, and, under the ``next_allowed_day`` policy, a new run of the same
deployment is scheduled at the same local time on the first day outside every blackout. Runs
started by a person are never moved: they asked for now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from prefect import get_run_logger
from prefect.context import FlowRunContext
from prefect.deployments import run_deployment
from prefect.states import Cancelled, State

from upkeep.db import open_session
from upkeep.domain.cadence import (
    Blackout,
    blackout_on,
    local_time_on,
    next_allowed_day,
)
from upkeep.domain.contract import ContractView
from upkeep.tasks.records import get_contract


@dataclass(frozen=True)
class BlackoutDecision:
    blackout: Blackout
    move_to: datetime | None
    """None: skip."""

    def message(self, slot: datetime) -> str:
        why = f"{slot:%Y-%m-%d} is a blackout day" + (
            f" ({self.blackout.reason})" if self.blackout.reason else ""
        )
        if self.move_to is None:
            return f"skipped: {why}"
        return f"moved to {self.move_to:%Y-%m-%d %H:%M %Z}: {why}"


def decide(slot: datetime, blackouts: list[Blackout], policy: str) -> BlackoutDecision | None:
    """What to do with a run scheduled at ``slot`` (local, aware). Pure."""
    hit = blackout_on(slot.date(), blackouts)
    if hit is None:
        return None
    if policy == "skip":
        return BlackoutDecision(hit, None)
    day = next_allowed_day(slot.date(), blackouts)
    assert slot.tzinfo is not None
    return BlackoutDecision(hit, local_time_on(day, slot.time(), slot.tzinfo))


def blackout_guard(contract_code: str) -> State[Any] | None:
    """For a run Prefect's schedule started on a blackout day: the state to end it with."""
    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx else None
    if run is None or run.deployment_id is None or not run.auto_scheduled:
        return None
    with open_session() as db:
        view = ContractView.of(get_contract(session=db, code=contract_code))
    blackouts, policy, tz = view.blackout_days(), view.blackout_policy, view.timezone
    if not blackouts:
        return None
    slot = (run.expected_start_time or datetime.now(ZoneInfo(tz))).astimezone(ZoneInfo(tz))
    decision = decide(slot, blackouts, policy)
    if decision is None:
        return None
    message = decision.message(slot)
    if decision.move_to is not None:
        run_deployment(
            str(run.deployment_id),
            parameters=dict(run.parameters),
            scheduled_time=decision.move_to,
            timeout=0,
            as_subflow=False,
            tags=["upkeep", "moved-by-blackout"],
        )
    get_run_logger().warning("%s", message)
    return Cancelled(message=message)
