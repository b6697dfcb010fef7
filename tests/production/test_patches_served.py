"""The patch-advisory cycle as it runs for a customer: ``upkeep serve`` serves the contract's
``patch-advisory`` deployment, the Prefect server's own scheduler creates the run on the
contract's cadence, the run suspends at the customer's review, the approval is sent through
the REST resume call the UI's form makes, the runner re-runs the flow from the top (the
survey, plan, report and mail come back from the run's results, nothing is sent twice) and
the approved update is installed over SSH from a real apt repository and proven.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from tests.apt_repo import LocalAptRepo, canary_advisory, local_apt_repo_fixture  # noqa: F401
from tests.polling import wait_until
from tests.production.stack import Api, ServeUpkeep
from upkeep.models import OutboxMessage, PatchPlan, PatchStep

pytestmark = pytest.mark.production

ALICE = {"name": "Alice Owner", "email": "alice@customer.example"}
SCHEDULER_BOUND = 300


def scheduled_run_waiting(api: Api, name: str) -> dict[str, Any] | None:
    """The first run of patch-advisory/NAME the server's scheduler created, once it waits at
    its gate; a scheduled run that failed fails the test."""
    try:
        dep = api.deployment("patch-advisory", name)
    except httpx.HTTPStatusError:  # upkeep serve registers it a moment after the inspection
        return None
    for run in sorted(api.runs_of(dep["id"]), key=lambda r: r["expected_start_time"] or ""):
        state = run["state"] or {}
        if not run["auto_scheduled"]:
            continue
        if state.get("type") in ("FAILED", "CRASHED"):
            raise AssertionError(f"scheduled run {run['name']} ended {state}")
        if state.get("type") == "PAUSED":
            return run
    return None


def test_a_scheduled_patch_cycle_is_approved_through_the_ui_resume_and_applied(
    serve_upkeep: ServeUpkeep,
    prod_api: Api,
    local_apt_repo: LocalAptRepo,
    tmp_path: Path,
) -> None:
    served = serve_upkeep(
        "PATCHSRV",
        approvers=[ALICE],
        cadences={"patch_advisory": {"cron": "* * * * *"}},
        patching={"mode": "apply"},
        serve=False,
    )
    record = tmp_path / "canary.json"
    record.write_text(json.dumps(canary_advisory("Debian:12")))
    synced = served.upkeep("advisories", "sync", str(record))
    assert synced.returncode == 0, synced.stdout + synced.stderr
    served.serve()

    run = wait_until(
        "a patch-advisory run created by the server's scheduler to wait at its gate",
        lambda: scheduled_run_waiting(prod_api, "patchsrv"),
        SCHEDULER_BOUND,
    )
    assert run["parameters"]["params"]["requested_by"] == "schedule"
    assert local_apt_repo.installed_version() == local_apt_repo.old  # nothing before approval
    code = served.mailbox.wait_code(ALICE["email"], timeout=120)
    result = prod_api.answer(
        run["id"], {"decision": "approve", "approver": "Alice Owner", "code": code}, timeout=120
    )
    assert result["status"] == "ACCEPT", result
    prod_api.wait_state(run["id"], "COMPLETED", timeout=SCHEDULER_BOUND)
    assert local_apt_repo.installed_version() == local_apt_repo.new

    engine = sa.create_engine(f"sqlite:///{served.workdir / 'data' / 'upkeep.db'}")
    try:
        with Session(engine) as s:
            row = s.exec(select(PatchPlan).where(PatchPlan.flow_run_id == run["id"])).one()
            steps = [
                (st.step, st.ok)
                for st in s.exec(
                    select(PatchStep).where(PatchStep.plan_id == row.id).order_by(col(PatchStep.id))
                )
            ]
    finally:
        engine.dispose()
    assert row.status == "applied" and row.approved_hash == row.plan_hash
    assert ("install", True) in steps and ("closure", True) in steps
    # The flow re-ran from the top after the resume: the plan went to the customer once, and
    # Alice got one code.
    reviews = [
        m
        for m in served.mailbox.to("it@customer.example")
        if "Patch plan for your review: PATCHSRV" in str(m["Subject"])
    ]
    assert len(reviews) == 1
    assert len(set(served.mailbox.codes_for(ALICE["email"]))) == 1
    # The rollout's result was queued once. The outbox delivers at least once: a second copy
    # in the mailbox is only allowed when that one message took more than one attempt (the
    # SMTP server accepted it but the answer was lost, under load).
    done = [
        m
        for m in served.mailbox.to("it@customer.example")
        if "Patch rollout done: PATCHSRV" in str(m["Subject"])
    ]
    engine = sa.create_engine(f"sqlite:///{served.workdir / 'data' / 'upkeep.db'}")
    try:
        with Session(engine) as s:
            queued = [
                (m.attempts, m.last_error)
                for m in s.exec(select(OutboxMessage))
                if "Patch rollout done: PATCHSRV" in m.subject
            ]
    finally:
        engine.dispose()
    assert len(queued) == 1, queued
    assert len(done) == 1 or queued[0][0] >= len(done), (len(done), queued)
