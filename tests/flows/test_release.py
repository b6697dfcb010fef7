"""The release checklist end to end with a real application on the sshd test hosts (this
machine): released by its own release command over SSH, probed over real HTTP, approved with
the mailed code, confirmed through the checklist form, rolled back against the clock; the
customer's mail from a real SMTP server. Times are compressed by parameters (no soak, a tiny
rollback limit), never by sleeping."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from tests.flow_fixtures import wait_for_code
from tests.inspection_helpers import ALICE, Background, answer, pending
from tests.release_app import (  # noqa: F401 (fixture)
    ReleaseApp,
    declare_now,
    load_shop,
    release_app_fixture,
)
from upkeep.domain.releases import CHECKLIST_GATE, RELEASE_GATE
from upkeep.flows.release import ReleaseParams, release
from upkeep.models import Finding, Release, ReleaseStep

pytestmark = pytest.mark.flows


def _run(release_id: int) -> Background:
    params = ReleaseParams(release_id=release_id, requested_by="Eve Engineer", soak_seconds=0)
    return Background(lambda: release(params, return_state=True))


def _through_the_gates(engine, smtp_server) -> None:
    """Eve confirms the manual item (after a first answer missing it is refused), Alice
    approves with her code."""
    form = pending(engine, CHECKLIST_GATE)
    answer(form, action="confirm", engineer="Eve Engineer", confirmed=[])
    answer(form, action="confirm", engineer="Eve Engineer", confirmed=["db-migration"])
    gate = pending(engine, RELEASE_GATE)
    assert "**Test report:** report-" in gate.evidence and "sha256" in gate.evidence
    assert "db-migration: confirmed by Eve Engineer" in gate.evidence
    answer(gate, decision="approve", approver="Alice Owner", code=wait_for_code(smtp_server, ALICE))


def _steps(engine, release_id: int) -> list[tuple[str, str, bool, str]]:
    with Session(engine) as s:
        return [
            (st.step, st.host, st.ok, st.actor)
            for st in s.exec(
                select(ReleaseStep)
                .where(ReleaseStep.release_id == release_id)
                .order_by(col(ReleaseStep.id))
            )
        ]


def _status(engine, release_id: int) -> str:
    with Session(engine) as s:
        row = s.get(Release, release_id)
        assert row is not None
        return row.status


def _mails(smtp_server) -> list[str]:
    return [
        str(m.message()["Subject"])
        for m in list(smtp_server.handler.received)
        if "it@acme.example" in m.rcpt_tos
    ]


def test_a_good_version_goes_canary_then_all_and_is_verified(
    engine, load_inventory, sshd_servers, release_app: ReleaseApp, smtp_server, tmp_path: Path
) -> None:
    load_shop(load_inventory, sshd_servers, release_app)
    rid = declare_now(engine, tmp_path, "2.0")
    run = _run(rid)
    _through_the_gates(engine, smtp_server)
    state = run.state(timeout=180)
    assert state.is_completed(), state.message
    assert state.result().status == "released"
    assert release_app.current() == "2.0"
    steps = _steps(engine, rid)
    assert [s[:3] for s in steps if s[0] in ("release", "smoke-canary", "soak", "verify")] == [
        ("release", "app1", True),
        ("smoke-canary", "", True),
        ("soak", "", True),
        ("release", "app2", True),
        ("verify", "", True),
    ]
    assert ("confirmed", "", True, "Eve Engineer") in steps
    assert ("decision", "", True, "Alice Owner") in steps
    assert _status(engine, rid) == "released"
    assert "[upkeep] Released: shop 2.0 (ACME)" in _mails(smtp_server)
    # a release runs once
    again = release(ReleaseParams(release_id=rid), return_state=True)
    assert again.is_failed() and "is released, not declared" in again.message


def test_a_bad_version_fails_on_the_canary_and_is_rolled_back_within_the_clock(
    engine, load_inventory, sshd_servers, release_app: ReleaseApp, smtp_server, tmp_path: Path
) -> None:
    load_shop(load_inventory, sshd_servers, release_app)
    rid = declare_now(engine, tmp_path, "3.0-bad")
    run = _run(rid)
    _through_the_gates(engine, smtp_server)
    state = run.state(timeout=180)
    assert state.is_failed()
    assert "smoke checks failed on the canary" in state.message
    assert "rolled back and verified in" in state.message
    assert release_app.current() == "1.0"
    names = [(s[0], s[1]) for s in _steps(engine, rid)]
    assert ("release", "app2") not in names  # stopped before the rest
    assert ("rollback", "app1") in names and ("rollback-clock", "") in names
    assert _status(engine, rid) == "rolled-back"
    assert "[upkeep] Release ROLLED BACK: shop 3.0-bad (ACME)" in _mails(smtp_server)
    with Session(engine) as s:
        assert s.exec(select(Finding).where(Finding.check == "release-rollback")).all() == []


def test_a_failure_after_the_full_release_rolls_everything_back_and_a_late_rollback_is_critical(
    engine, load_inventory, sshd_servers, release_app: ReleaseApp, smtp_server, tmp_path: Path
) -> None:
    load_shop(load_inventory, sshd_servers, release_app, rollback_limit_minutes=0.0001)
    rid = declare_now(engine, tmp_path, "4.0-late")
    run = _run(rid)
    _through_the_gates(engine, smtp_server)
    state = run.state(timeout=180)
    assert state.is_failed() and "post-release verification failed" in state.message
    assert release_app.current() == "1.0"
    steps = _steps(engine, rid)
    assert [s[1] for s in steps if s[0] == "rollback"] == ["app2", "app1"]  # latest first
    clock = next(s for s in steps if s[0] == "rollback-clock")
    assert clock[2] is False  # verified, but later than 0.006 s
    with Session(engine) as s:
        (finding,) = s.exec(select(Finding).where(Finding.check == "release-rollback")).all()
    assert finding.severity == "critical" and "LATE" in finding.message


def test_failing_pre_checks_stop_before_anything_is_asked_or_released(
    engine, load_inventory, sshd_servers, release_app: ReleaseApp, smtp_server, tmp_path: Path
) -> None:
    load_shop(
        load_inventory,
        sshd_servers,
        release_app,
        checklist=[{"name": "backup", "kind": "automatic", "check": "backup_fresh"}],
    )
    rid = declare_now(engine, tmp_path, "2.0")
    state = release(ReleaseParams(release_id=rid, soak_seconds=0), return_state=True)
    assert state.is_failed()
    assert "backup: shop: no backup verified good in the last 26 h (last: never)" in (state.message)
    assert release_app.current() == "1.0" and _status(engine, rid) == "checks-failed"
    assert _mails(smtp_server) == []
