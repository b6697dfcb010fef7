"""The release checklist end to end with a real application on the sshd test hosts (this
machine): released by its own release command over SSH, probed over real HTTP, approved with
the mailed code, confirmed through the checklist form, rolled back against the clock; the
customer's mail from a real SMTP server. Times are compressed by parameters (no soak, a tiny
rollback limit), never by sleeping."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from tests.apt_repo import steady_packages_fixture  # noqa: F401
from tests.flow_fixtures import codes_sent, host_entry, wait_for_code
from tests.inspection_helpers import ALICE, Background, answer, pending
from tests.release_app import (  # noqa: F401 (fixture)
    CORA,
    ReleaseApp,
    declare_now,
    load_shop,
    release_app_fixture,
    review_and_approve,
)
from upkeep.domain.releases import (
    CHECKLIST_GATE,
    RELEASE_GATE,
    TEST_REPORT_GATE,
    TEST_REPORT_REVISION_GATE,
)
from upkeep.flows.release import ReleaseParams, release
from upkeep.models import (
    ApprovalEvent,
    Finding,
    Host,
    HostInventory,
    HostResult,
    InspectionRun,
    Release,
    ReleaseStep,
)
from upkeep.settings import get_settings

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
    review = pending(engine, TEST_REPORT_GATE)
    assert "all green" in review.evidence  # a Markdown report is shown inline
    answer(
        review, decision="approve", approver="Cora Customer", code=wait_for_code(smtp_server, CORA)
    )
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
    (page,) = [a for a in _attachments_to(smtp_server, "it@acme.example") if a.endswith(".html")]
    assert page.startswith(f"release-ACME-{rid}-")  # the report page, kept and attached
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


def _attachments_to(smtp_server, email: str) -> list[str]:
    """The attachment file names of every mail to ``email``, oldest first."""
    names = []
    for m in list(smtp_server.handler.received):
        if email in m.rcpt_tos:
            names += [p.get_filename() for p in m.message().walk() if p.get_filename()]
    return names


def test_a_rejected_test_report_is_revised_and_only_release_approvers_approve_the_release(
    engine, load_inventory, sshd_servers, release_app: ReleaseApp, smtp_server, tmp_path: Path
) -> None:
    load_shop(load_inventory, sshd_servers, release_app)
    rid = declare_now(engine, tmp_path, "2.0")
    run = _run(rid)
    answer(
        pending(engine, CHECKLIST_GATE),
        action="confirm",
        engineer="Eve Engineer",
        confirmed=["db-migration"],
    )
    first = pending(engine, TEST_REPORT_GATE)
    answer(
        first,
        decision="reject",
        approver="Cora Customer",
        code=wait_for_code(smtp_server, CORA),
        comment="no load test",
    )
    revision = pending(engine, TEST_REPORT_REVISION_GATE)
    assert "no load test" in revision.evidence
    elsewhere = tmp_path / "report-2.0-load.html"  # not in the report inbox: refused
    elsewhere.write_text("<h1>Load test</h1><p>p95 120 ms</p>")
    answer(revision, action="resubmit", engineer="Eve Engineer", test_report=str(elsewhere))
    inbox = get_settings().inbox
    missing = inbox / "gone.md"
    answer(revision, action="resubmit", engineer="Eve Engineer", test_report="gone.md")
    revised = inbox / "report-2.0-load.html"
    revised.parent.mkdir(parents=True, exist_ok=True)
    revised.write_text(elsewhere.read_text())
    answer(
        revision,
        action="resubmit",
        engineer="Eve Engineer",
        test_report="report-2.0-load.html",
        note="load test added",
    )
    second = pending(engine, TEST_REPORT_GATE, after=first.id or 0)
    assert "report-2.0-load.html" in second.evidence and "revision 2" in second.evidence
    answer(
        second,
        decision="approve",
        approver="Cora Customer",
        code=wait_for_code(smtp_server, CORA, 2),
    )
    gate = pending(engine, RELEASE_GATE)
    assert "report-2.0-load.html" in gate.evidence
    # Cora reviews test reports; she is no release approver: the gate's form refuses her name
    with pytest.raises(RuntimeError, match="'Cora Customer' is not one of"):
        answer(gate, decision="approve", approver="Cora Customer", code="ABCDE-FGHJK")
    answer(gate, decision="approve", approver="Alice Owner", code=wait_for_code(smtp_server, ALICE))
    state = run.state(timeout=180)
    assert state.is_completed(), state.message
    assert release_app.current() == "2.0"
    with Session(engine) as s:
        row = s.get(Release, rid)
        assert row is not None
        assert row.test_report_name == "report-2.0-load.html"
        assert Path(row.test_report_path).read_text() == revised.read_text()
        assert row.test_report_path != str(revised)  # kept by upkeep, not the engineer's file
        refused = s.exec(
            select(ApprovalEvent).where(
                ApprovalEvent.approval_id == revision.id, ApprovalEvent.kind == "refused"
            )
        ).all()
    assert [e.detail for e in refused] == [
        f"test report {str(elsewhere)!r} is not in the report inbox {inbox}: copy it there "
        "(UPKEEP_REPORT_INBOX) and give its name",
        f"test report {missing} does not exist (a file on the machine running upkeep)",
    ]
    steps = _steps(engine, rid)
    reviews = [s for s in steps if s[0].startswith("report-review:")]
    assert [(ok, actor) for _, _, ok, actor in reviews] == [
        (False, "Cora Customer"),
        (True, "Cora Customer"),
    ]
    assert reviews[0][0] != reviews[1][0]  # each decision names the hash it saw
    assert ("report-revised", "", True, "Eve Engineer") in steps
    assert _attachments_to(smtp_server, CORA) == ["1-shop-2.0.md", "1-shop-2.0-r1.html"]
    assert _attachments_to(smtp_server, ALICE) == []


def test_a_test_report_rejected_then_cancelled_releases_nothing(
    engine, load_inventory, sshd_servers, release_app: ReleaseApp, smtp_server, tmp_path: Path
) -> None:
    load_shop(load_inventory, sshd_servers, release_app, checklist=[])
    rid = declare_now(engine, tmp_path, "2.0")
    run = _run(rid)
    answer(
        pending(engine, TEST_REPORT_GATE),
        decision="reject",
        approver="Cora Customer",
        code=wait_for_code(smtp_server, CORA),
        comment="tests are missing",
    )
    answer(pending(engine, TEST_REPORT_REVISION_GATE), action="cancel", engineer="Eve Engineer")
    state = run.state(timeout=120)
    assert state.is_cancelled() and "rejection" in (state.message or "")
    assert _status(engine, rid) == "cancelled" and release_app.current() == "1.0"
    assert codes_sent(smtp_server, ALICE) == []  # the release approval was never asked


def test_a_target_host_not_reached_fails_hosts_healthy_after_the_others_were_inspected(
    engine, load_inventory, sshd_servers, release_app: ReleaseApp, smtp_server, tmp_path: Path
) -> None:
    load_shop(
        load_inventory,
        sshd_servers,
        release_app,
        extra_hosts=[host_entry("app3", None, system="shop")],  # a closed port
        checklist=[{"name": "hosts", "kind": "automatic", "check": "hosts_healthy"}],
    )
    rid = declare_now(engine, tmp_path, "2.0")
    state = release(ReleaseParams(release_id=rid, soak_seconds=0), return_state=True)
    assert state.is_failed() and "app3 not reached" in (state.message or "")
    assert release_app.current() == "1.0" and _status(engine, rid) == "checks-failed"
    with Session(engine) as s:
        (check_run,) = s.exec(select(InspectionRun).where(InspectionRun.kind == "release-check"))
        inspected = {
            r.host_id for r in s.exec(select(HostResult).where(HostResult.run_id == check_run.id))
        }
        hosts = {h.id: h.name for h in s.exec(select(Host))}
    assert {hosts[i] for i in inspected} >= {"app1", "app2"}  # the catalogue ran on each
    assert codes_sent(smtp_server, CORA) == []  # nothing was asked


@pytest.mark.usefixtures("steady_packages")  # the hosts are this machine: its packages
def test_configuration_changes_since_the_last_release_are_shown_to_the_approvers(
    engine, load_inventory, sshd_servers, release_app: ReleaseApp, smtp_server, tmp_path: Path
) -> None:
    load_shop(
        load_inventory,
        sshd_servers,
        release_app,
        checklist=[{"name": "config", "kind": "automatic", "check": "config_changes"}],
    )
    first = declare_now(engine, tmp_path, "2.0")
    run = _run(first)
    evidence = review_and_approve(engine, smtp_server)
    assert "app1: nothing from before the last inventory to compare (now recorded)" in evidence
    assert run.state(timeout=180).is_completed()
    assert ("baseline", "", True, "upkeep") in _steps(engine, first)
    # Since that release, one package "appeared" on app1: its baseline lacks it.
    with Session(engine) as s:
        app1 = s.exec(select(Host).where(Host.name == "app1")).one()
        baseline = s.exec(
            select(HostInventory)
            .where(HostInventory.host_id == app1.id)
            .order_by(col(HostInventory.id).desc())
        ).first()
        assert baseline is not None
        gone = baseline.packages[0]["name"]
        baseline.packages = baseline.packages[1:]
        s.add(baseline)
        s.commit()
    second = declare_now(engine, tmp_path, "1.0")
    run = _run(second)
    evidence = review_and_approve(engine, smtp_server, 2)
    assert f"app1: 1 added since release {first} (2.0): + {gone}" in evidence
    assert f"app2: no package changed since release {first} (2.0)" in evidence
    assert run.state(timeout=180).is_completed()
    assert release_app.current() == "1.0"
