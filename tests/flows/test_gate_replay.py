"""Every gate replays correctly in deployment runs, however often the run was suspended.

A run of a deployment *suspends* at a gate: its process ends, and after a resume the flow
re-runs from the top. These tests drive that for real: the inspection is registered as a
deployment on the session's Prefect server, each execution of the run is a separate
``python -m prefect.engine`` process (what ``upkeep serve``'s runner starts for a scheduled or
resumed run), and every answer goes through ``POST /api/flow_runs/{id}/resume``, the call the
Prefect UI's resume form makes. Codes come from a real SMTP server, hosts are real sshd.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from tests.deployed_run import RUN_TIMEOUT, DeployedRun, retry
from tests.flow_fixtures import codes_sent, host_entry, wait_for_code
from tests.inspection_helpers import ALICE, BACKUP, BOB, PAUL, events, pending
from tests.polling import wait_until
from upkeep.flows.inspection import quarterly_health_inspection
from upkeep.flows.watchdog import approval_watchdog
from upkeep.models import (
    Approval,
    ApprovalCode,
    ApprovalEvent,
    InspectionRun,
    OutboxMessage,
    RunClaim,
)

pytestmark = pytest.mark.flows


@pytest.fixture
def deployed(deploy) -> Any:
    """``deployed()``: a new run of the ACME inspection deployment, not yet executed."""
    return lambda: deploy(
        quarterly_health_inspection, {"params": {"contract": "ACME", "requested_by": "tester"}}
    )


@pytest.fixture
def at_plan(
    engine, load_inventory, sshd, smtp_server, deployed
) -> tuple[DeployedRun, Approval, str]:
    """One host's inspection run, suspended at its plan gate: the run, the gate, Paul's code."""
    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    run = deployed()
    assert run.execute().name == "Suspended"
    gate = pending(engine, "inspection-plan")
    return run, gate, wait_for_code(smtp_server, PAUL)


def gate_row(engine: sa.Engine, gate_id: int) -> Approval:
    with Session(engine) as s:
        row = s.get(Approval, gate_id)
        assert row is not None
        return row


def verdicts(engine: sa.Engine, gate_id: int) -> list[str]:
    return [k for k, _ in events(engine, gate_id) if k in ("approved", "refused", "decided")]


def test_approve_replays_once(engine, smtp_server, at_plan) -> None:
    run, gate, paul = at_plan
    assert run.answer(decision="approve", approver="Paul Lead", code=paul).is_completed()
    assert (gate_row(engine, gate.id).decision, gate_row(engine, gate.id).approver) == (
        "approve",
        "Paul Lead",
    )
    assert verdicts(engine, gate.id) == ["approved", "decided"]
    assert len(codes_sent(smtp_server, PAUL)) == 1 and len(codes_sent(smtp_server, ALICE)) == 1


def test_reject_revise_approve_across_suspends(
    engine, load_inventory, sshd_servers, smtp_server, deployed
) -> None:
    """The issue's path: reject with a comment, resubmit without db1, approve the new plan.
    Nobody is mailed a code for the rejected plan again, and the run completes."""
    web, db = sshd_servers[0], sshd_servers[1]
    load_inventory([host_entry("web1", web), host_entry("db1", db)], trust=[web, db])
    run = deployed()
    assert run.execute().name == "Suspended"
    first = pending(engine, "inspection-plan")
    alice1 = wait_for_code(smtp_server, ALICE)
    state = run.answer(decision="reject", approver="Alice Owner", code=alice1, comment="no db1")
    assert state.name == "Suspended", state
    assert gate_row(engine, first.id).decision == "reject"
    revision = pending(engine, "inspection-plan-revision")
    # a re-run replays the rejection from its record: no second code, no second verdict
    assert run.answer(action="resubmit", engineer="Eve", exclude_hosts=["db1"]).name == (
        "Suspended"
    )
    assert gate_row(engine, revision.id).decision == "resubmit"
    second = pending(engine, "inspection-plan", after=first.id)
    assert "db1" in second.evidence and "Excluded" in second.evidence
    paul2 = wait_for_code(smtp_server, PAUL, nth=2)
    state = run.answer(decision="approve", approver="Paul Lead", code=paul2, comment="ok")
    assert state.is_completed(), state
    assert verdicts(engine, first.id) == ["decided"]  # judged once, over three re-runs
    assert verdicts(engine, revision.id) == ["decided"]
    assert verdicts(engine, second.id) == ["approved", "decided"]
    assert len(codes_sent(smtp_server, ALICE)) == 2  # one per plan, none after her rejection
    assert len(codes_sent(smtp_server, PAUL)) == 2
    with Session(engine) as s:
        (inspection,) = s.exec(select(InspectionRun)).all()
        assert [h["name"] for h in inspection.plan["hosts"]] == ["web1"]


def test_m_of_n_over_several_resumes(engine, load_inventory, sshd, smtp_server, deployed) -> None:
    load_inventory(
        [host_entry("web1", sshd)], trust=[sshd], approval_policy={"required_approvals": 2}
    )
    run = deployed()
    assert run.execute().name == "Suspended"
    gate = pending(engine, "inspection-plan")
    alice, paul = wait_for_code(smtp_server, ALICE), wait_for_code(smtp_server, PAUL)
    assert run.answer(decision="approve", approver="Alice Owner", code=alice).name == "Suspended"
    assert gate_row(engine, gate.id).decision is None  # 1 of 2
    assert run.answer(decision="approve", approver="Paul Lead", code=alice).name == "Suspended"
    assert run.answer(decision="approve", approver="Paul Lead", code=paul).is_completed()
    row = gate_row(engine, gate.id)
    assert (row.decision, row.approver) == ("approve", "Alice Owner, Paul Lead")
    assert verdicts(engine, gate.id) == ["approved", "refused", "approved", "decided"]
    # Alice approved in the first re-run and was never mailed again in the later ones
    assert len(codes_sent(smtp_server, ALICE)) == 1 and len(codes_sent(smtp_server, PAUL)) == 1
    with Session(engine) as s:
        assert len(s.exec(select(ApprovalCode)).all()) == 2


def test_escalation_replays(engine, load_inventory, sshd, smtp_server, deployed) -> None:
    load_inventory(
        [host_entry("web1", sshd)],
        trust=[sshd],
        backup_approver=BACKUP,
        approval_policy={"escalate_after_hours": 4, "expire_after_hours": 72},
    )
    run = deployed()
    assert run.execute().name == "Suspended"
    gate = pending(engine, "inspection-plan")
    alice = wait_for_code(smtp_server, ALICE)
    assert run.answer(decision="approve", approver="Alice Owner", code="ABCDE-FGHJK").name == (
        "Suspended"
    )
    report = approval_watchdog(now=gate.requested_at + timedelta(hours=5))
    assert report.escalated == [gate.id]
    bob = wait_for_code(smtp_server, BOB)
    assert run.answer(decision="approve", approver="Bob Backup", code=bob).is_completed()
    assert gate_row(engine, gate.id).approver == "Bob Backup"
    assert [k for k, _ in events(engine, gate.id)].count("escalated") == 1
    assert codes_sent(smtp_server, BOB) == [bob] and codes_sent(smtp_server, ALICE) == [alice]


def test_expiry_ends_the_run_and_a_retry_ends_it_again_with_the_reason(
    engine, smtp_server, at_plan
) -> None:
    run, gate, _ = at_plan
    report = approval_watchdog(now=gate.requested_at + timedelta(hours=100))
    assert report.expired == [gate.id] and report.runs_ended == [gate.id]
    state = run.state()
    assert state.is_cancelled() and "expired" in (state.message or "")
    assert retry(run).is_final()
    state = run.state()
    assert state.is_failed() and "expired" in (state.message or ""), state
    assert gate_row(engine, gate.id).decision == "expired"
    assert len(codes_sent(smtp_server, PAUL)) == 1  # the retry mailed nobody


def test_the_revision_step_expires_in_deployment_runs_too(engine, at_plan, flow_env) -> None:
    run, gate, paul = at_plan
    assert run.answer(decision="reject", approver="Paul Lead", code=paul, comment="no").name == (
        "Suspended"
    )
    revision = pending(engine, "inspection-plan-revision")
    soon = approval_watchdog(now=revision.requested_at + timedelta(hours=1))
    assert soon.expired == [] and soon.escalated == [] and soon.notified == []
    hours = flow_env.approval_timeout_hours + 1
    report = approval_watchdog(now=revision.requested_at + timedelta(hours=hours))
    assert report.expired == [revision.id] and report.runs_ended == [revision.id]
    assert gate_row(engine, revision.id).decision == "expired"
    state = run.state()
    assert state.is_cancelled() and "expired" in (state.message or ""), state
    assert gate_row(engine, gate.id).decision == "reject"


def test_a_planted_answer_does_not_block_the_gate(engine, at_plan) -> None:
    """Someone creates the open form's response key without resuming (POST .../input): the
    genuine answer is refused with 409 until the watchdog removes the planted one; then the
    same answer through the same UI call goes through. Form keys are random per form."""
    run, gate, paul = at_plan
    planted = run.plant('{"decision": "approve"}')
    assert planted.status_code == 201, planted.text
    assert run.resume(decision="approve", approver="Paul Lead", code=paul).status_code == 409
    report = approval_watchdog()
    assert report.planted == [gate.id] and report.expired == []
    assert run.answer(decision="approve", approver="Paul Lead", code=paul).is_completed()
    assert gate_row(engine, gate.id).approver == "Paul Lead"
    kinds = [k for k, _ in events(engine, gate.id)]
    assert kinds.count("planted") == 1 and "refused" not in kinds  # removed unread
    with Session(engine) as s:
        keys = [
            e.attempt_key
            for e in s.exec(select(ApprovalEvent).where(ApprovalEvent.kind == "waiting"))
        ]
    assert len(keys) == 1 and keys[0] is not None
    assert (
        keys[0].startswith("inspection-plan-r1-")
        and len(keys[0]) == len("inspection-plan-r1-") + 16
    )


def test_the_cli_answers_through_a_planted_answer(engine, at_plan, flow_env) -> None:
    from typer.testing import CliRunner

    from upkeep.cli import app

    run, gate, paul = at_plan
    run.plant("{}").raise_for_status()
    executor = threading.Thread(
        target=lambda: (wait_until("the resume", lambda: not run.suspended()), run.execute())
    )
    executor.start()
    result = CliRunner().invoke(
        app, ["approve", str(run.id), "--as", "Paul Lead", "--code", paul], catch_exceptions=False
    )
    executor.join(RUN_TIMEOUT)
    assert result.exit_code == 0, result.output
    assert "approve by Paul Lead" in result.output
    assert run.state().is_completed()
    assert ("planted", None) in events(engine, gate.id)


def test_a_cancelled_run_closes_its_gate_and_the_cli_says_so(engine, at_plan, flow_env) -> None:
    from prefect.states import Cancelled
    from typer.testing import CliRunner

    from upkeep.cli import app

    run, gate, paul = at_plan
    run.force_state(Cancelled(message="cancelled from the UI"))
    # the gate is still pending on record: the CLI finds the run ended, says so, closes it
    result = CliRunner().invoke(app, ["approve", str(run.id), "--as", "Paul Lead", "--code", paul])
    assert result.exit_code != 0
    assert "not waiting for an answer" in result.output and "Cancelled" in result.output
    assert "Traceback" not in result.output
    row = gate_row(engine, gate.id)
    assert row.decision == "cancelled" and "cancelled from the UI" in (row.comment or "")
    again = CliRunner().invoke(app, ["approve", str(run.id), "--as", "Paul Lead", "--code", paul])
    assert again.exit_code != 0 and "cancelled" in again.output
    # Retry on the cancelled run ends it with the reason instead of waiting on a closed gate
    retry(run)
    state = run.state()
    assert state.is_failed() and "closed" in (state.message or ""), state


def test_the_watchdog_closes_the_gate_of_a_run_that_ended(engine, at_plan) -> None:
    from prefect.states import Crashed

    run, gate, _ = at_plan
    run.force_state(Crashed(message="worker lost"))
    report = approval_watchdog()
    assert report.closed == [gate.id] and report.notified == []
    row = gate_row(engine, gate.id)
    assert row.decision == "cancelled" and "worker lost" in (row.comment or "")
    assert approval_watchdog().closed == []


def pre_gate_records(engine: sa.Engine) -> dict[str, int]:
    """What the steps before the plan gate leave behind: rows per table of record."""
    with Session(engine) as s:
        return {
            model.__name__: len(s.exec(select(model)).all())
            for model in (Approval, ApprovalCode, InspectionRun, RunClaim, OutboxMessage)
        }


def test_no_step_before_the_gate_runs_twice_in_a_fresh_process(
    engine, smtp_server, at_plan
) -> None:
    """The rule of upkeep.flows: every step before a gate is persisted or idempotent by a
    database key. A refused answer makes the run re-run from the top in a new process up to
    the same gate: no new record, no second mail; then it completes once."""
    run, gate, paul = at_plan
    before, mails = pre_gate_records(engine), len(smtp_server.handler.received)
    state = run.answer(decision="approve", approver="Paul Lead", code="ABCDE-FGHJK")
    assert state.name == "Suspended", state
    assert pre_gate_records(engine) == before
    assert len(smtp_server.handler.received) == mails
    assert run.answer(decision="approve", approver="Paul Lead", code=paul).is_completed()
    after = pre_gate_records(engine)
    assert (
        after["Approval"] == before["Approval"] and after["ApprovalCode"] == before["ApprovalCode"]
    )
    assert after["InspectionRun"] == 1  # the work after the gate ran once
    assert len(codes_sent(smtp_server, PAUL)) == 1 and len(codes_sent(smtp_server, ALICE)) == 1
