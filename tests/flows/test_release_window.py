"""A release reviewed and approved days before its window: the review run ends approved and
Prefect's server holds the window run, scheduled before the window (so it survives restarts of
everything in between); that run checks again and releases. Time is moved by moving the
window and the scheduled run to now, as if the hours had passed."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.states import Scheduled
from sqlmodel import Session, col, select

from tests.inspection_helpers import Background
from tests.release_app import (  # noqa: F401 (fixture)
    TZ,
    ReleaseApp,
    load_shop,
    release_app_fixture,
    review_and_approve,
)
from upkeep.domain.releases import Declared
from upkeep.flows.release import ReleaseParams, release
from upkeep.models import Release, ReleaseStep
from upkeep.tasks.release_run import WINDOW_LEAD
from upkeep.tasks.releases import declare_release

pytestmark = pytest.mark.flows


def _declare_in(engine, tmp_path: Path, hours: float) -> int:
    report = tmp_path / "report.md"
    report.write_text("# Test report\nall green\n")
    window = (datetime.now(ZoneInfo(TZ)) + timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M")
    with Session(engine) as s:
        row, _ = declare_release(
            session=s,
            declared=Declared("ACME", "shop", "2.0", "- faster search", window, report),
            declared_by="Eve Engineer",
        )
        s.commit()
        assert row.id is not None
        return row.id


def _row(engine, rid: int) -> Release:
    with Session(engine) as s:
        row = s.get(Release, rid)
        assert row is not None
        return row


def test_an_approved_release_far_from_its_window_is_started_by_prefect(
    engine, load_inventory, sshd_servers, release_app: ReleaseApp, smtp_server, tmp_path: Path,
    deploy,
) -> None:  # fmt: skip
    # the scheduled run takes the system's soak (no --soak-seconds): none here
    load_shop(load_inventory, sshd_servers, release_app, checklist=[], soak_minutes=0)
    release.to_deployment(name="acme", parameters={}).apply()  # as upkeep serve does
    rid = _declare_in(engine, tmp_path, hours=3)
    params = ReleaseParams(release_id=rid, requested_by="Eve Engineer", soak_seconds=0)
    review = Background(lambda: release(params, return_state=True))
    review_and_approve(engine, smtp_server)
    state = review.state(timeout=120)
    assert state.is_completed(), state.message
    outcome = state.result()
    row = _row(engine, rid)
    assert outcome.status == "approved" == row.status and release_app.current() == "1.0"
    assert row.flow_run_id is not None and row.flow_run_id in outcome.outcome

    with get_client(sync_client=True) as client:
        scheduled = client.read_flow_run(UUID(row.flow_run_id))
        deployment = client.read_deployment(scheduled.deployment_id)
    assert scheduled.state is not None and scheduled.state.is_scheduled()
    assert deployment.name == "acme"
    assert scheduled.parameters == {"params": {"release_id": rid, "requested_by": "Eve Engineer"}}
    expected = row.window_at - WINDOW_LEAD
    assert scheduled.expected_start_time is not None
    assert abs((scheduled.expected_start_time - expected).total_seconds()) < 1

    # a second start by hand is refused: the window run starts by itself
    again = release(ReleaseParams(release_id=rid), return_state=True)
    assert again.is_failed() and "is approved and its window run" in (again.message or "")

    # three hours later: the window is now, and so is the scheduled run
    with Session(engine) as s:
        stored = s.get(Release, rid)
        assert stored is not None
        stored.window_at = datetime.now(UTC)
        s.add(stored)
        s.commit()
    window_run = deploy(None, {}, UUID(row.flow_run_id))
    window_run.force_state(Scheduled(scheduled_time=datetime.now(UTC)))
    final = window_run.execute()
    assert final.is_completed(), final
    assert release_app.current() == "2.0" and _row(engine, rid).status == "released"
    with Session(engine) as s:
        steps = [
            (st.step, st.ok)
            for st in s.exec(
                select(ReleaseStep)
                .where(ReleaseStep.release_id == rid)
                .order_by(col(ReleaseStep.id))
            )
        ]
    names = [name for name, _ in steps]
    # checked before the review and again at the window; one decision each
    assert names.index("check:smoke-checks") < names.index("scheduled")
    assert names.index("scheduled") < names.index("window-check:smoke-checks")
    assert names.count("decision") == 1 and ("scheduled", True) in steps
    assert names[-3:] == ["verify", "report", "effect-scheduled"]


def test_without_a_deployment_an_approved_release_waits_for_a_run_by_hand(
    engine, load_inventory, sshd_servers, release_app: ReleaseApp, smtp_server, tmp_path: Path,
    prefect_server,
) -> None:  # fmt: skip
    load_shop(load_inventory, sshd_servers, release_app, checklist=[])
    # nothing serves release/acme on this server
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
        client.delete_deployment(client.read_deployment_by_name("release/acme").id)
    rid = _declare_in(engine, tmp_path, hours=3)
    params = ReleaseParams(release_id=rid, requested_by="Eve Engineer", soak_seconds=0)
    review = Background(lambda: release(params, return_state=True))
    review_and_approve(engine, smtp_server)
    state = review.state(timeout=120)
    assert state.is_completed(), state.message
    assert f"run `upkeep releases run {rid}`" in state.result().outcome
    row = _row(engine, rid)
    assert row.status == "approved" and row.flow_run_id is None
    # too early by hand: refused, still approved
    early = release(ReleaseParams(release_id=rid), return_state=True)
    assert early.is_failed() and "starts at most 1:00:00 before it" in (early.message or "")
    assert _row(engine, rid).status == "approved"
