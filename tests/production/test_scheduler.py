"""The Prefect server's own scheduler creates upkeep's runs, and they complete.

Nothing here starts a scheduled run by hand: ``upkeep serve`` registers the deployments, the
server's scheduler service creates their runs, and the served process executes them. This is
the path that broke silently when a pinned SQLAlchemy made every scheduler loop fail.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.polling import wait_until
from tests.production.stack import Api, ServeUpkeep
from upkeep.demo.prefect_server import LocalPrefectServer

pytestmark = pytest.mark.production

SCHEDULER_BOUND = 300
"""Seconds: the next minute boundary, one scheduler loop (60 s), the run itself, slack."""


def completed_scheduled_run(api: Api, flow: str, name: str) -> dict[str, Any] | None:
    """A run of the deployment that the server's scheduler created and that completed. A
    scheduled run that failed fails the test at once, unless it was refused because the
    previous minute's inspection was still running (the flow allows one at a time)."""
    dep = api.deployment(flow, name)
    for run in api.runs_of(dep["id"]):
        state = run["state"] or {}
        if not run["auto_scheduled"]:
            continue
        if state.get("type") == "COMPLETED":
            return run
        message = str(state.get("message") or "")
        if state.get("type") in ("FAILED", "CRASHED") and "already running" not in message:
            raise AssertionError(
                f"scheduled run {run['name']} ended {state.get('type')}: {message}"
            )
    return None


def test_a_served_inspection_runs_on_its_schedule_and_the_watchdog_by_itself(
    serve_upkeep: ServeUpkeep, prod_api: Api
) -> None:
    served = serve_upkeep(
        "SCHED",
        plan_requires_approval=False,
        cadences={"inspection": {"cron": "* * * * *"}},
    )
    run = wait_until(
        "a run of inspection/sched created by the server's scheduler to complete",
        lambda: completed_scheduled_run(prod_api, "inspection", "sched"),
        SCHEDULER_BOUND,
    )
    assert run["parameters"]["params"]["requested_by"] == "schedule"
    reports = list((served.workdir / "data" / "reports" / "SCHED").rglob("*.html"))
    assert reports, "the scheduled inspection wrote no report"
    wait_until(
        "a run of the approval watchdog created by the server's scheduler to complete",
        lambda: completed_scheduled_run(prod_api, "approval-watchdog", "upkeep"),
        SCHEDULER_BOUND,
    )
    assert "scheduler ok" in wait_until(
        "upkeep serve to confirm the server schedules its runs",
        lambda: "scheduler ok" in served.log() and served.log(),
        60,
    )
    assert "SCHEDULER PROBLEM" not in served.log()


def test_serve_says_loudly_when_the_server_schedules_nothing(
    serve_upkeep: ServeUpkeep, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A server whose scheduler service is off stands in for one whose scheduler fails."""
    home = tmp_path_factory.mktemp("prefect-no-scheduler")
    env = {"PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false"}
    with LocalPrefectServer(home, extra_env=env) as server:
        served = serve_upkeep(
            "NOSCHED",
            api=Api(server.api_url),
            env={"UPKEEP_SERVE_CHECK_SECONDS": "15"},
            plan_requires_approval=False,
            cadences={"inspection": {"cron": "* * * * *"}},
        )
        log = wait_until(
            "upkeep serve to say that the server schedules nothing",
            lambda: "SCHEDULER PROBLEM" in served.log() and served.log(),
            90,
        )
        served.stop()
    assert "no run for inspection/nosched" in log
    assert "no run for approval-watchdog/upkeep" in log
    assert "scheduler ok" not in log
