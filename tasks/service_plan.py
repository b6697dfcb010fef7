"""The next period's plan of a service report: what the contract's deployments will run.

:func:`plan_for_period` is pure (the cadences they are built from, after the contract's
blackouts and blackout policy, in words); the ``plan-period`` task reads them from the
contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from prefect import get_run_logger, task

from upkeep.db import open_session
from upkeep.domain.cadence import (
    Blackout,
    Cadence,
    CadenceError,
    describe,
    dst_shift,
    parse_blackouts,
    parse_cadence,
    planned_runs,
)
from upkeep.domain.cadence import PlannedRun as CadenceSlot
from upkeep.domain.contract import ContractView
from upkeep.domain.periods import local_midnight
from upkeep.domain.processes import specs_for, unsupported
from upkeep.domain.report_time import contract_zone
from upkeep.domain.service_report import PeriodPlan, PlannedRun, process_name
from upkeep.tasks.records import get_contract

POLICY_WORDS = {
    "next_allowed_day": "A run that falls on a blackout day moves to the next allowed day, at the "
    "same time.",
    "skip": "A run that falls on a blackout day is skipped.",
}


def _blackout_words(blackout: Blackout) -> str:
    days = (
        f"{blackout.start.isoformat()}"
        if blackout.start == blackout.end
        else f"{blackout.start.isoformat()} – {blackout.end.isoformat()}"
    )
    return f"{days}: {blackout.reason}" if blackout.reason else days


def _slot_notes(cadence: Cadence, slot: CadenceSlot, zone: tzinfo) -> tuple[str, ...]:
    notes = []
    why = f" ({slot.reason})" if slot.reason else ""
    if slot.skipped:
        notes.append(f"skipped: blackout day{why}")
    elif slot.moved:
        original = slot.original.astimezone(zone)
        notes.append(f"moved from {original:%Y-%m-%d %H:%M}: blackout day{why}")
    at = slot.at.astimezone(zone)
    wall = dst_shift(cadence, at)
    if wall is not None and not slot.skipped:
        notes.append(
            f"at {at:%H:%M} instead of {wall:%H:%M}: {wall:%H:%M} does not exist on "
            f"{at:%Y-%m-%d}, when the clocks go forward"
        )
    return tuple(notes)


def plan_for_period(
    *,
    cadences: Mapping[str, Any],
    timezone: str,
    start: datetime,
    end: datetime,
    blackouts: object = None,
    policy: str = "next_allowed_day",
    not_scheduled: Sequence[str] = (),
) -> PeriodPlan:
    """What ``cadences`` (process key -> cadence as written) plan for ``[start, end)``.

    Pure. Blackouts apply with ``policy`` (moved runs and skipped ones say so, and why); a
    run that daylight saving moved says so; cadences are in words, processes by name. A
    cadence that cannot be read, and the processes in ``not_scheduled``, are named in the
    note, never with the raw expression.
    """
    problems: list[str] = []
    try:
        parsed = parse_blackouts(blackouts)
    except CadenceError:
        problems.append("the blackout days in the inventory cannot be read")
        parsed = []
    zone = contract_zone(timezone)
    runs: list[PlannedRun] = []
    for key, written in sorted(cadences.items()):
        try:
            cadence = parse_cadence(written)
        except CadenceError:
            problems.append(f"{process_name(key)}: its cadence cannot be read")
            continue
        try:
            slots = planned_runs(cadence, timezone, parsed, policy, start, end)
            words = describe(cadence, timezone, start)
        except ValueError:
            # An unknown timezone or policy, or a cron date that never comes (30 February).
            problems.append(f"{process_name(key)}: no run time can be computed from its cadence")
            continue
        runs += [
            PlannedRun(
                at=slot.at.astimezone(zone),
                process=process_name(key),
                cadence=words,
                notes=_slot_notes(cadence, slot, zone),
                skipped=slot.skipped,
                key=key,
            )
            for slot in slots
        ]
    problems += [f"{process_name(key)}: not scheduled by upkeep yet" for key in not_scheduled]
    first, last = start.astimezone(zone).date(), (end - timedelta(seconds=1)).astimezone(zone)
    in_period = [b for b in parsed if b.end >= first and b.start <= last.date()]
    return PeriodPlan(
        runs=tuple(sorted(runs, key=lambda r: (r.at, r.process))),
        blackouts=tuple(_blackout_words(b) for b in in_period),
        policy=POLICY_WORDS.get(policy) if in_period else None,
        note="Not planned: " + "; ".join(problems) + "." if problems else None,
    )


@task(name="plan-period")
def plan_period(contract: str, start: date, stop: date) -> PeriodPlan:
    """What the contract's deployments run in ``[start, stop)`` (local dates): the cadences
    they are built from (``deployments.specs_for``), after blackouts."""
    with open_session() as db:
        view = ContractView.of(get_contract(session=db, code=contract))
    cadences = {s.process: s.cadence for s in specs_for(view) if s.cadence is not None}
    not_scheduled = unsupported(view)
    zone = contract_zone(view.timezone)
    plan = plan_for_period(
        cadences=cadences,
        timezone=view.timezone,
        start=local_midnight(start, zone),
        end=local_midnight(stop, zone),
        blackouts=list(view.blackouts),
        policy=view.blackout_policy,
        not_scheduled=not_scheduled,
    )
    if plan.note:
        get_run_logger().warning("plan for %s – %s incomplete: %s", start, stop, plan.note)
    return plan
