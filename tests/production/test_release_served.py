"""A release as it runs for a customer: ``upkeep serve`` serves the contract's ``release``
deployment; ``upkeep releases declare`` starts the review run on it; the customer's tester
reviews the test report and the release approver approves through the REST resume call the
UI's form makes; the window is hours away, so the run ends approved and the Prefect server
holds the window run, which ``upkeep serve``'s runner starts by itself when it is due and
which releases a real application over SSH and verifies it over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from tests.polling import wait_until
from tests.production.stack import Api, ServeUpkeep
from tests.release_app import ReleaseApp, release_app_fixture  # noqa: F401 (fixture)
from upkeep.models import Release, ReleaseStep

pytestmark = pytest.mark.production

ALICE = {"name": "Alice Owner", "email": "alice@customer.example"}
CORA = {"name": "Cora Customer", "email": "cora@customer.example"}
BOUND = 300


def _release(served: Any, rid: int) -> tuple[Release, list[tuple[str, bool, str]]]:
    engine = sa.create_engine(f"sqlite:///{served.workdir / 'data' / 'upkeep.db'}")
    try:
        with Session(engine) as s:
            row = s.get(Release, rid)
            assert row is not None
            steps = [
                (st.step, st.ok, st.actor)
                for st in s.exec(
                    select(ReleaseStep)
                    .where(ReleaseStep.release_id == rid)
                    .order_by(col(ReleaseStep.id))
                )
            ]
            return row, steps
    finally:
        engine.dispose()


def test_a_declared_release_is_reviewed_approved_and_released_by_the_served_window_run(
    serve_upkeep: ServeUpkeep, prod_api: Api, release_app: ReleaseApp, tmp_path: Path
) -> None:
    served = serve_upkeep(
        "RELSRV",
        approvers=[ALICE],
        host_fields={"system": "shop"},
        systems=[
            {
                "name": "shop",
                "smoke_checks": [
                    {"name": "health", "url": f"{release_app.url}/health", "body_contains": '"ok"'}
                ],
                "release": {
                    "release_command": f"{release_app.switch} {{version}}",
                    "rollback_command": f"{release_app.switch} --previous",
                    "soak_minutes": 0,
                },
            }
        ],
        gate_policies={"release-test-report": {"approvers": [CORA]}},
    )

    # served with it (registered a moment after the inspection): the UI's declaration form
    # and the effect report, both started per release
    def registered(flow: str) -> dict[str, Any] | None:
        try:
            return prod_api.deployment(flow, "relsrv")
        except httpx.HTTPStatusError:
            return None

    declare = wait_until("release-declare/relsrv registered", lambda: registered("release-declare"))
    assert declare["parameters"] == {"params": {"contract": "RELSRV"}}
    effect = wait_until("release-effect/relsrv registered", lambda: registered("release-effect"))
    assert effect["parameters"] == {"params": {}}
    wait_until("release/relsrv registered", lambda: registered("release"))
    changes, report = tmp_path / "changes.txt", tmp_path / "report.md"
    changes.write_text("- faster search\n")
    report.write_text("# Test report 2.0\nall green\n")
    window = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(hours=3)).strftime(
        "%Y-%m-%d %H:%M"
    )
    declared = served.upkeep(
        "releases", "declare", "--contract", "RELSRV", "--system", "shop", "--version", "2.0",
        "--changes", str(changes), "--window", window, "--test-report", str(report),
        "--as", "Eve Engineer",
    )  # fmt: skip
    assert declared.returncode == 0, declared.stdout + declared.stderr
    assert "release run " in declared.stdout and "started (release/relsrv)" in declared.stdout
    review_id = declared.stdout.split("release run ", 1)[1].split()[0]

    # the customer's tester reviews the test report (mailed to her, attached), then Alice
    code = served.mailbox.wait_code(CORA["email"], timeout=BOUND)
    (mail,) = [
        m for m in served.mailbox.to(CORA["email"]) if "Test report for review" in str(m["Subject"])
    ]
    assert [p.get_filename() for p in mail.iter_attachments()] == ["1-shop-2.0.md"]
    result = prod_api.answer(
        review_id, {"decision": "approve", "approver": "Cora Customer", "code": code}, BOUND
    )
    assert result["status"] == "ACCEPT", result
    code = served.mailbox.wait_code(ALICE["email"], timeout=BOUND)
    result = prod_api.answer(
        review_id, {"decision": "approve", "approver": "Alice Owner", "code": code}, BOUND
    )
    assert result["status"] == "ACCEPT", result
    review = prod_api.wait_state(review_id, "COMPLETED", timeout=BOUND)
    assert release_app.current() == "1.0"
    row, _ = _release(served, 1)
    assert row.status == "approved" and row.flow_run_id not in (None, review_id)
    window_run = prod_api.run(str(row.flow_run_id))
    assert window_run["state"]["type"] == "SCHEDULED"
    assert window_run["deployment_id"] == review["deployment_id"]

    # Three hours later, as far as upkeep and the server know: the window and the scheduled
    # start are moved to now; the served runner picks the run up by itself.
    engine = sa.create_engine(f"sqlite:///{served.workdir / 'data' / 'upkeep.db'}")
    try:
        with Session(engine) as s:
            stored = s.get(Release, 1)
            assert stored is not None
            stored.window_at = datetime.now(UTC) + timedelta(seconds=5)
            s.add(stored)
            s.commit()
    finally:
        engine.dispose()
    moved = httpx.post(
        f"{prod_api.url}/flow_runs/{row.flow_run_id}/set_state",
        json={
            "state": {
                "type": "SCHEDULED",
                "name": "Scheduled",
                "state_details": {"scheduled_time": datetime.now(UTC).isoformat()},
            },
            "force": True,
        },
        timeout=30,
    )
    assert moved.json()["status"] == "ACCEPT", moved.text
    prod_api.wait_state(str(row.flow_run_id), "COMPLETED", timeout=BOUND)
    assert release_app.current() == "2.0"
    row, steps = _release(served, 1)
    assert row.status == "released"
    names = [name for name, _, _ in steps]
    assert names.index("scheduled") < names.index("window-check:smoke-checks")
    assert ("decision", True, "Alice Owner") in steps
    assert any(n.startswith("report-review:") and a == "Cora Customer" for n, _, a in steps)
    assert names[-3:] == ["verify", "report", "effect-scheduled"]
    assert steps[-1][1] is True  # upkeep serve serves release-effect: the report is scheduled
    done = [
        m
        for m in served.mailbox.to("it@customer.example")
        if "Released: shop 2.0 (RELSRV)" in str(m["Subject"])
    ]
    assert len(done) == 1
