"""The quarterly inspection end to end: real sshd hosts, real SMTP, the session's Prefect server.

Approvals go through ``resume_flow_run``, the API call behind the UI's resume form, while the
flow runs in a thread beside the test (as Prefect's own paused-flow tests do).
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest
from prefect.flow_runs import resume_flow_run
from sqlmodel import Session, col, select

from tests.flow_fixtures import host_entry, wait_for_code
from tests.inspection_helpers import (
    ALICE,
    PAUL,
    Background,
    answer,
    paused,
    pending,
    refusals,
    run_inspection,
)
from tests.polling import wait_until
from upkeep.flows.inspection import (
    RecheckParams,
    recheck_findings,
)
from upkeep.models import Approval, ApprovalEvent, Finding, Host, InspectionRun, OutboxMessage

pytestmark = pytest.mark.flows


def test_full_inspection_with_approval_report_and_email(
    engine, load_inventory, sshd_servers, smtp_server
):
    good, other = sshd_servers[0], sshd_servers[1]
    load_inventory(
        [host_entry("web1", good), host_entry("db1", other), host_entry("gone", None)],
        trust=[good, other],
    )
    bg = run_inspection(email_report=True)
    gate = pending(engine, "inspection-plan")
    assert "web1" in gate.evidence and "db1" in gate.evidence
    code = wait_for_code(smtp_server, ALICE)
    answer(gate, decision="approve", approver="Alice Owner", code=code, comment="go ahead")
    state = bg.state()
    assert state.is_completed(), state.message
    outcome = state.result()
    assert outcome.unreachable == ["gone"]
    report = Path(outcome.report_path)
    html = report.read_text()
    assert "Alice Owner" in html and "gone" in html
    with Session(engine) as s:
        decided = s.get(Approval, gate.id)
        assert decided is not None
        assert (decided.decision, decided.approver) == ("approve", "Alice Owner")
        assert decided.decided_at is not None and decided.decided_at >= decided.requested_at
        log = [
            (e.kind, e.actor)
            for e in s.exec(
                select(ApprovalEvent)
                .where(ApprovalEvent.approval_id == gate.id)
                .order_by(col(ApprovalEvent.id))
            )
        ]
        assert log == [
            ("opened", None),
            ("notified", "Alice Owner"),
            ("notified", "Paul Lead"),
            ("waiting", None),
            ("approved", "Alice Owner"),
            ("decided", "Alice Owner"),
        ]
        run = s.exec(select(InspectionRun)).one()
        assert run.report_path == str(report) and run.status == "completed"
        gone = s.exec(select(Host).where(Host.name == "gone")).one()
        finding = s.exec(select(Finding).where(Finding.host_id == gone.id)).one()
        assert (finding.check, finding.severity) == ("reachability", "critical")
    reports = [m for m in smtp_server.handler.wait_for(3) if "it@acme.example" in m.rcpt_tos]
    assert len(reports) == 1  # two approval codes, then the report
    assert outcome.email["sent"] and not outcome.email["failed"]

    from prefect.artifacts import Artifact

    summary = Artifact.get("inspection-acme")
    assert summary is not None and report.as_uri() in str(summary.data)
    assert Artifact.get("inspection-acme-findings") is not None


def test_rejection_revision_and_approval_loop(engine, load_inventory, sshd_servers, smtp_server):
    web, db = sshd_servers[0], sshd_servers[1]
    load_inventory([host_entry("web1", web), host_entry("db1", db)], trust=[web, db])
    bg = run_inspection()
    first = pending(engine, "inspection-plan")
    answer(
        first,
        decision="reject",
        approver="Alice Owner",
        code=wait_for_code(smtp_server, ALICE),
        comment="db1 is frozen this quarter",
    )
    revision = pending(engine, "inspection-plan-revision")
    assert "db1 is frozen this quarter" in revision.evidence
    answer(
        revision,
        action="resubmit",
        engineer="Eve Engineer",
        exclude_hosts=["db1"],
        window="2026-12-01 – 2026-12-05",
        note="db1 left out",
    )
    second = pending(engine, "inspection-plan", after=first.id)
    assert "Excluded from this inspection" in second.evidence and "db1" in second.evidence
    answer(
        second,
        decision="approve",
        approver="Paul Lead",
        code=wait_for_code(smtp_server, PAUL, nth=2),
    )
    state = bg.state()
    assert state.is_completed(), state.message
    with Session(engine) as s:
        run = s.exec(select(InspectionRun)).one()
        assert run.window == "2026-12-01 – 2026-12-05"
        assert [h["name"] for h in run.plan["hosts"]] == ["web1"]
        rejected = s.get(Approval, first.id)
        assert rejected is not None and rejected.decision == "reject"
        assert rejected.approver == "Alice Owner"  # canonical name, matched by e-mail
        assert rejected.comment == "db1 is frozen this quarter"
        rev = s.get(Approval, revision.id)
        assert rev is not None and (rev.decision, rev.approver) == ("resubmit", "Eve Engineer")


def test_cancel_after_rejection_ends_the_run_cancelled(engine, load_inventory, sshd, smtp_server):
    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    bg = run_inspection()
    answer(
        pending(engine, "inspection-plan"),
        decision="reject",
        approver="Paul Lead",
        code=wait_for_code(smtp_server, PAUL),
        comment="not this quarter",
    )
    answer(pending(engine, "inspection-plan-revision"), action="cancel", engineer="Eve")
    state = bg.state()
    assert state.is_cancelled()
    with Session(engine) as s:
        assert s.exec(select(InspectionRun)).all() == []  # nothing was inspected


def test_unknown_approver_and_empty_resume_are_refused(engine, load_inventory, sshd, smtp_server):
    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    bg = run_inspection()
    gate = pending(engine, "inspection-plan")
    code = wait_for_code(smtp_server, ALICE)
    # A name the contract does not list is not among the form's choices: the server refuses
    # it before the flow sees it, and the run keeps waiting.
    with pytest.raises(RuntimeError, match="approver"):
        answer(gate, decision="approve", approver="Mallory", code=code)
    assert refusals(engine) == [] and paused(gate.flow_run_id)
    # An empty resume is refused by the API against the form's schema: no decision, no run.
    wait_until("the gate to pause again", lambda: paused(gate.flow_run_id))
    with pytest.raises(RuntimeError, match="(?i)validation|required|run input"):
        resume_flow_run(UUID(gate.flow_run_id), run_input={})
    assert paused(gate.flow_run_id)
    # A rejection without a reason is refused by the flow, and does not use up the code.
    answer(gate, decision="reject", approver="Alice Owner", code=code, comment="  ")
    wait_until("the refusal", lambda: len(refusals(engine)) == 1)
    with Session(engine) as s:
        still = s.get(Approval, gate.id)
        assert still is not None and still.decision is None
    answer(gate, decision="approve", approver="Alice Owner", code=code)
    assert bg.state().is_completed()


def test_smtp_down_then_up_delivers_exactly_once(
    engine, load_inventory, sshd, start_smtp, monkeypatch
):
    from tests.smtp_fixtures import free_port
    from upkeep.settings import reset_settings

    port = free_port()
    load_inventory([host_entry("web1", sshd)], trust=[sshd], plan_requires_approval=False)
    monkeypatch.setenv("UPKEEP_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("UPKEEP_SMTP_PORT", str(port))
    monkeypatch.setenv("UPKEEP_SMTP_TLS", "none")
    reset_settings()
    first = run_inspection(email_report=True).state()
    assert first.is_completed()
    assert Path(first.result().report_path).exists()  # the report is saved anyway
    with Session(engine) as s:
        (msg,) = s.exec(select(OutboxMessage)).all()
        assert msg.status == "pending" and msg.last_error
    server = start_smtp(port=port)
    second = run_inspection(email_report=True).state()
    assert second.is_completed()
    got = server.handler.wait_for(2)
    with Session(engine) as s:
        rows = s.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        assert [m.status for m in rows] == ["sent", "sent"]
        assert rows[0].attempts == 2 and rows[1].attempts == 1
    assert len(got) == 2


def test_second_inspection_compares_with_the_first(engine, load_inventory, sshd):
    load_inventory(
        [host_entry("web1", sshd)],
        trust=[sshd],
        plan_requires_approval=False,
        thresholds={"disk_used_pct_major": 1, "disk_used_pct_critical": 99},
    )
    first = run_inspection().state().result()
    with Session(engine) as s:
        disk = s.exec(select(Finding).where(Finding.check == "disk")).all()
        assert disk and all(f.run_id == first.run_id for f in disk)
    second = run_inspection().state().result()
    with Session(engine) as s:
        for f in s.exec(select(Finding).where(Finding.check == "disk")):
            assert f.status == "open"
            assert f.run_id == first.run_id and f.last_seen_run_id == second.run_id
    html = Path(second.report_path).read_text()
    assert "persisting" in html.lower() or "still open" in html.lower()


def test_recheck_resolves_a_fixed_finding(engine, load_inventory, sshd):
    load_inventory([host_entry("web1", sshd)], plan_requires_approval=False)  # untrusted key
    first = run_inspection().state().result()
    assert first.unreachable == ["web1"]
    load_inventory([host_entry("web1", sshd)], trust=[sshd], plan_requires_approval=False)
    state = Background(
        lambda: recheck_findings(RecheckParams(contract="ACME"), return_state=True)
    ).state()
    assert state.is_completed(), state.message
    recheck = state.result()
    with Session(engine) as s:
        f = s.exec(select(Finding).where(Finding.check == "reachability")).one()
        assert f.status == "resolved" and f.resolved_by_run_id == recheck.run_id
        assert f.resolved_at is not None
        run = s.get(InspectionRun, recheck.run_id)
        assert run is not None and run.kind == "recheck"
