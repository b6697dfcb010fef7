"""The release flow's gates replay correctly in deployment runs (the rule in
``upkeep.flows``): each execution a fresh ``python -m prefect.engine`` process, every answer
through the UI's REST resume call. The checklist form, a refused approval and the approval
re-run the flow from the top: the pre-checks, the confirmation, the test report's review and
the decision are recorded once, the release runs once, each approver got one code."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.states import Crashed
from sqlmodel import Session, col, select

from tests.deployed_run import retry
from tests.flow_fixtures import codes_sent, wait_for_code
from tests.inspection_helpers import ALICE
from tests.polling import wait_until
from tests.release_app import (  # noqa: F401 (fixture)
    CORA,
    ReleaseApp,
    declare_now,
    load_shop,
    release_app_fixture,
)
from upkeep.flows.release import ReleaseParams, release
from upkeep.models import InterfaceProbe, Release, ReleaseStep

pytestmark = pytest.mark.flows


def _steps(engine) -> list[tuple[str, str]]:
    with Session(engine) as s:
        return [
            (st.step, st.host) for st in s.exec(select(ReleaseStep).order_by(col(ReleaseStep.id)))
        ]


def _probes(engine) -> int:
    with Session(engine) as s:
        return len(s.exec(select(InterfaceProbe)).all())


def test_a_release_confirmed_reviewed_refused_and_approved_over_five_processes(
    engine, load_inventory, sshd_servers, release_app: ReleaseApp, smtp_server, deploy,
    tmp_path: Path,
) -> None:  # fmt: skip
    load_shop(load_inventory, sshd_servers, release_app)
    rid = declare_now(engine, tmp_path, "2.0")
    run = deploy(release, {"params": {"release_id": rid, "requested_by": "Eve", "soak_seconds": 0}})
    assert run.execute().name == "Suspended"  # at the checklist form
    assert _steps(engine) == [("check:smoke", "")]
    probes = _probes(engine)

    state = run.answer(action="confirm", engineer="Eve Engineer", confirmed=["db-migration"])
    assert state.name == "Suspended", state  # at the test report's review
    review_code = wait_for_code(smtp_server, CORA)
    state = run.answer(decision="approve", approver="Cora Customer", code=review_code)
    assert state.name == "Suspended", state  # at the release gate
    code = wait_for_code(smtp_server, ALICE)
    assert run.answer(decision="approve", approver="Alice Owner", code="ABCDE-FGHJK").name == (
        "Suspended"
    )
    steps = _steps(engine)
    assert steps[:2] == [("check:smoke", ""), ("confirmed", "")] and len(steps) == 3
    assert steps[2][0].startswith("report-review:")
    assert _probes(engine) == probes  # the pre-checks did not run again
    assert release_app.current() == "1.0"

    state = run.answer(decision="approve", approver="Alice Owner", code=code)
    assert state.is_completed(), state
    assert release_app.current() == "2.0"
    assert _steps(engine) == [
        ("check:smoke", ""),
        ("confirmed", ""),
        steps[2],
        ("decision", ""),
        ("release", "app1"),
        ("smoke-canary", ""),
        ("soak", ""),
        ("release", "app2"),
        ("verify", ""),
        ("report", ""),
        ("effect-scheduled", ""),  # no release-effect deployment here: says how, by hand
    ]
    assert codes_sent(smtp_server, ALICE) == [code]
    assert codes_sent(smtp_server, CORA) == [review_code]


def _unfinished_release_step(engine, host: str) -> bool:
    with Session(engine) as s:
        return any(
            st.host == host and st.finished_at is None
            for st in s.exec(select(ReleaseStep).where(ReleaseStep.step == "release"))
        )


def test_a_release_run_killed_while_releasing_is_rolled_back_when_it_is_retried(
    engine, load_inventory, sshd_servers, release_app: ReleaseApp, smtp_server, deploy,
    tmp_path: Path,
) -> None:  # fmt: skip
    load_shop(load_inventory, sshd_servers, release_app, checklist=[])
    rid = declare_now(engine, tmp_path, "5.0-hang")
    run = deploy(release, {"params": {"release_id": rid, "requested_by": "Eve", "soak_seconds": 0}})
    assert run.execute().name == "Suspended"  # the test report's review
    code = wait_for_code(smtp_server, CORA)
    assert run.answer(decision="approve", approver="Cora Customer", code=code).name == "Suspended"
    answered = run.resume(
        decision="approve", approver="Alice Owner", code=wait_for_code(smtp_server, ALICE)
    )
    assert answered.json()["status"] == "ACCEPT", answered.text
    proc = run.start()
    try:  # the canary is switched and its release command hangs: the worker dies now
        wait_until(
            "the canary switched, its release command unfinished",
            lambda: (
                release_app.current() == "5.0-hang" and _unfinished_release_step(engine, "app1")
            ),
            timeout=180,
        )
    finally:
        proc.kill()
        proc.wait(timeout=30)
    # Prefect still has the killed run as running: nobody else may start the release
    other = release(ReleaseParams(release_id=rid), return_state=True)
    assert other.is_failed() and "wait for it, or cancel it first" in (other.message or "")
    assert release_app.current() == "5.0-hang"

    run.force_state(Crashed(message="the worker died"))  # what Prefect records for it
    state = retry(run)  # the UI's Retry
    assert state.is_failed() and "release rolled-back" in (state.message or ""), state
    assert "interrupted after starting the release on app1" in (state.message or "")
    assert release_app.current() == "1.0"
    with Session(engine) as s:
        row = s.get(Release, rid)
        assert row is not None and row.status == "rolled-back"
        steps = [
            (st.step, st.host, st.ok)
            for st in s.exec(
                select(ReleaseStep)
                .where(ReleaseStep.release_id == rid)
                .order_by(col(ReleaseStep.id))
            )
        ]
    assert ("release", "app1", False) in steps  # started, never finished
    assert ("release", "app2", False) not in steps and ("release", "app2", True) not in steps
    after = steps[[s[0] for s in steps].index("failure") :]
    assert [s[:2] for s in after[:4]] == [
        ("failure", ""),
        ("rollback", "app1"),
        ("rollback-verify", ""),
        ("rollback-clock", ""),
    ]
    assert all(ok for _, _, ok in after[1:4])
    assert any(
        "Release ROLLED BACK: shop 5.0-hang (ACME)" in str(m.message()["Subject"])
        for m in list(smtp_server.handler.received)
    )
