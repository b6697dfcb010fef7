"""Does the Prefect server really schedule what ``upkeep serve`` serves?

A served deployment only runs on its cadence if the *server's* scheduler service creates its
runs. When that service breaks (it did: SQLAlchemy 2.1 made every scheduler loop of the Prefect
3.8 server fail, while everything else kept working), nothing runs on its schedule and nothing
says so. ``upkeep serve`` therefore watches, shortly after it starts, for the runs the server
creates for its deployments, and says loudly what is missing.

:func:`schedule_gaps` is the pure decision; :func:`watch_scheduled_runs` asks the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

from upkeep.domain.cadence import next_times, parse_cadence

HORIZON = timedelta(days=90)
"""The Prefect server schedules runs up to 100 days ahead (its ``max_scheduled_time``); a
deployment whose next cadence date is within this horizon must have a scheduled run."""


@dataclass(frozen=True)
class ScheduleCheck:
    """What the check found: per deployment ("flow/name"), runs the server created."""

    expected: dict[str, datetime]
    """Deployments that must have a scheduled run, with their next cadence date."""
    found: dict[str, int]
    """Runs the server created for each of them (auto-scheduled, any state)."""

    @property
    def missing(self) -> list[str]:
        return schedule_gaps(self.expected, self.found)

    @property
    def ok(self) -> bool:
        return not self.missing


def schedule_gaps(expected: Mapping[str, datetime], found: Mapping[str, int]) -> list[str]:
    """The expected deployments for which the server has created no run, soonest first."""
    return sorted((n for n in expected if found.get(n, 0) == 0), key=lambda n: expected[n])


def expected_runs(
    specs: list[tuple[str, Any, str]], interval_names: Mapping[str, timedelta], now: datetime
) -> dict[str, datetime]:
    """``specs``: (deployment "flow/name", cadence as written, timezone) of every scheduled
    deployment; ``interval_names``: deployments on a fixed interval. Returns those whose next
    date falls within :data:`HORIZON`, with that date."""
    out: dict[str, datetime] = {}
    for name, cadence, tz in specs:
        if cadence is None:
            continue
        upcoming = next_times(parse_cadence(cadence), tz, now, 1)
        if upcoming and upcoming[0] - now <= HORIZON:
            out[name] = upcoming[0]
    for name, every in interval_names.items():
        out[name] = now + every
    return out


def count_server_runs(names: list[str]) -> dict[str, int]:
    """How many runs the server's scheduler created for each deployment ("flow/name")."""
    found: dict[str, int] = {}
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                dep = client.read_deployment_by_name(name)
            except Exception:  # noqa: BLE001 - not registered yet: no runs yet
                found[name] = 0
                continue
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[dep.id])
                ),
                limit=20,
            )
            found[name] = sum(1 for r in runs if r.auto_scheduled)
    return found


def watch_scheduled_runs(
    expected: dict[str, datetime],
    timeout: float,
    say: Callable[[str], None],
    shout: Callable[[str], None],
    poll: float = 5.0,
) -> ScheduleCheck:
    """Poll the API until every expected deployment has a run the server scheduled, or until
    ``timeout`` seconds have passed; then report through ``say`` (fine) or ``shout`` (not)."""
    deadline = time.monotonic() + timeout
    check = ScheduleCheck(expected, {})
    while True:
        try:
            check = ScheduleCheck(expected, count_server_runs(list(expected)))
        except Exception as exc:  # noqa: BLE001 - the API is down: say so at the deadline
            error = f"{type(exc).__name__}: {exc}"
        else:
            error = ""
            if check.ok:
                total = sum(check.found.values())
                say(
                    f"scheduler ok: the Prefect server has scheduled {total} run(s) for "
                    f"{len(expected)} deployment(s)"
                )
                return check
        if time.monotonic() >= deadline:
            break
        time.sleep(poll)
    lines = [
        "SCHEDULER PROBLEM: "
        + (
            f"the Prefect API could not be asked ({error})"
            if error
            else f"after {timeout:.0f} s the Prefect server has created no scheduled run for "
            f"{len(check.missing)} of {len(expected)} served deployment(s)"
        ),
    ]
    lines += [f"  no run for {n} (next due {expected[n]:%Y-%m-%d %H:%M %Z})" for n in check.missing]
    lines.append(
        "  Nothing will run on its cadence and no approval will escalate or expire. Check that "
        "the server's scheduler service is enabled and look for errors from "
        "'schedule_recent_deployments' or 'scheduler' in the server's log."
    )
    shout("\n".join(lines))
    return check
