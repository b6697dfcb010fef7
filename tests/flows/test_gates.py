"""Who may approve, with what proof, how many, and what happens when nobody does.

Gates of interactive runs (paused) driven through the resume API with the codes mailed to a
real SMTP server; the watchdog is run as the interval deployment would run it.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from uuid import UUID

import pytest
from prefect.exceptions import NotPausedError
from prefect.flow_runs import resume_flow_run
from sqlmodel import Session

from tests.flow_fixtures import codes_sent, host_entry, wait_for_code
from tests.inspection_helpers import (
    ALICE,
    BACKUP,
    BOB,
    PAUL,
    answer,
    events,
    paused,
    pending,
    refusals,
    run_inspection,
)
from tests.polling import wait_until
from upkeep.flows.watchdog import approval_watchdog
from upkeep.models import Approval

pytestmark = pytest.mark.flows


def decision(engine, gate_id: int) -> tuple[str | None, str | None]:
    with Session(engine) as s:
        gate = s.get(Approval, gate_id)
        assert gate is not None
        return gate.decision, gate.approver


def refused_after(engine, count: int) -> str:
    wait_until(f"refusal #{count}", lambda: len(refusals(engine)) >= count)
    return sorted(refusals(engine), key=lambda e: e.id)[count - 1].detail


def test_m_of_n_and_a_code_works_once(engine, load_inventory, sshd, smtp_server):
    load_inventory(
        [host_entry("web1", sshd)], trust=[sshd], approval_policy={"required_approvals": 2}
    )
    bg = run_inspection()
    gate = pending(engine, "inspection-plan")
    alice = wait_for_code(smtp_server, ALICE)
    answer(gate, decision="approve", approver="Alice Owner", code=alice)
    wait_until("Alice's approval", lambda: ("approved", "Alice Owner") in events(engine, gate.id))
    assert decision(engine, gate.id) == (None, None)  # one of two
    # Alice has approved: the next form no longer offers her name, so the server refuses her
    # second answer (used code and all) before the flow sees it, and nothing changes.
    with pytest.raises(RuntimeError, match="approver"):
        answer(gate, decision="approve", approver="Alice Owner", code=alice)
    assert decision(engine, gate.id) == (None, None)
    answer(gate, decision="approve", approver="Paul Lead", code=wait_for_code(smtp_server, PAUL))
    assert bg.state().is_completed()
    assert decision(engine, gate.id) == ("approve", "Alice Owner, Paul Lead")


def test_wrong_codes_under_a_name_replace_that_code_and_never_lock_out(
    engine, load_inventory, sshd, smtp_server
):
    """A stranger typing wrong codes under Alice's name cannot lock her out: after
    max_failed_attempts her code is replaced, she is mailed a new one (told why), the
    attempts are on record, and her new code decides the gate."""
    load_inventory(
        [host_entry("web1", sshd)], trust=[sshd], approval_policy={"max_failed_attempts": 2}
    )
    bg = run_inspection()
    gate = pending(engine, "inspection-plan")
    old = wait_for_code(smtp_server, ALICE)
    answer(gate, decision="approve", approver="Alice Owner", code="ABCDE-FGHJK")
    assert refused_after(engine, 1) == "wrong code for this gate"
    answer(gate, decision="approve", approver="Alice Owner", code="not a code")
    assert "code was replaced" in refused_after(engine, 2)
    new = wait_for_code(smtp_server, ALICE, nth=2)
    assert new != old
    bodies = [m.message().get_body(("plain",)).get_content() for m in smtp_server.handler.received]
    (body,) = [b for b in bodies if new in b]
    assert "no longer works" in body
    answer(gate, decision="approve", approver="Alice Owner", code=old)
    assert "wrong code" in refused_after(engine, 3)  # the replaced code is dead
    answer(gate, decision="approve", approver="Alice Owner", code=new)
    assert bg.state().is_completed()
    assert decision(engine, gate.id) == ("approve", "Alice Owner")
    log = events(engine, gate.id)
    assert log.count(("rotated", "Alice Owner")) == 1
    assert len(codes_sent(smtp_server, ALICE)) == 2 and len(codes_sent(smtp_server, PAUL)) == 1


def test_the_starter_may_not_approve_their_own_run(engine, load_inventory, sshd, smtp_server):
    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    bg = run_inspection(requested_by=ALICE)
    gate = pending(engine, "inspection-plan")
    paul = wait_for_code(smtp_server, PAUL)
    assert codes_sent(smtp_server, ALICE) == []  # no code for a gate she may not answer
    # The form offers only Paul: the server refuses the starter's answer before the flow
    # sees it (judge refuses it too, should a form without the choice ever reach it).
    with pytest.raises(RuntimeError, match="approver"):
        answer(gate, decision="approve", approver="Alice Owner", code="ABCDE-FGHJK")
    answer(gate, decision="approve", approver="Paul Lead", code=paul)
    assert bg.state().is_completed()
    assert codes_sent(smtp_server, ALICE) == []


def test_a_code_from_an_earlier_gate_is_refused(engine, load_inventory, sshd_servers, smtp_server):
    web, db = sshd_servers[0], sshd_servers[1]
    load_inventory([host_entry("web1", web), host_entry("db1", db)], trust=[web, db])
    bg = run_inspection()
    first = pending(engine, "inspection-plan")
    old = wait_for_code(smtp_server, ALICE)
    answer(first, decision="reject", approver="Alice Owner", code=old, comment="no db1")
    answer(
        pending(engine, "inspection-plan-revision"),
        action="resubmit",
        engineer="Eve",
        exclude_hosts=["db1"],
    )
    second = pending(engine, "inspection-plan", after=first.id)
    answer(second, decision="approve", approver="Alice Owner", code=old)
    assert "wrong code" in refused_after(engine, 1)
    answer(
        second,
        decision="approve",
        approver="Alice Owner",
        code=wait_for_code(smtp_server, ALICE, nth=2),
    )
    assert bg.state().is_completed()


def test_prefect_template_input_is_never_an_approval(engine, load_inventory, sshd, smtp_server):
    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    bg = run_inspection()
    gate = pending(engine, "inspection-plan")
    wait_for_code(smtp_server, ALICE)
    wait_until("the gate to pause", lambda: paused(gate.flow_run_id))
    templated = {"__prefect_kind": "jinja", "template": "{{ 'ABCDE' }}-FGHJK"}
    try:
        resume_flow_run(
            UUID(gate.flow_run_id),
            run_input={"decision": "approve", "approver": "Alice Owner", "code": templated},
        )
    except RuntimeError:
        pass  # refused by the API: also fine, nothing was approved
    else:
        assert "wrong code" in refused_after(engine, 1)
    wait_until("the gate to wait again", lambda: paused(gate.flow_run_id))
    assert decision(engine, gate.id) == (None, None)
    answer(gate, decision="approve", approver="Paul Lead", code=wait_for_code(smtp_server, PAUL))
    assert bg.state().is_completed()


def test_two_answers_at_once_record_one_decision(engine, load_inventory, sshd, smtp_server):
    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    bg = run_inspection()
    gate = pending(engine, "inspection-plan")
    codes = {
        "Alice Owner": wait_for_code(smtp_server, ALICE),
        "Paul Lead": wait_for_code(smtp_server, PAUL),
    }
    wait_until("the gate to pause", lambda: paused(gate.flow_run_id))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def resume(name: str) -> None:
        barrier.wait()
        try:
            resume_flow_run(
                UUID(gate.flow_run_id),
                run_input={"decision": "approve", "approver": name, "code": codes[name]},
            )
            outcomes.append("sent")
        except Exception as exc:  # noqa: BLE001 - the loser may be told it is not paused
            outcomes.append(f"refused: {exc}")

    threads = [threading.Thread(target=resume, args=(n,)) for n in codes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # The API takes one of them; the other finds the run no longer paused.
    assert bg.state().is_completed()
    kinds = [k for k, _ in events(engine, gate.id)]
    assert kinds.count("decided") == 1 and kinds.count("approved") == 1
    assert decision(engine, gate.id)[0] == "approve"


def test_escalation_mails_the_backup_once_and_the_backup_may_decide(
    engine, load_inventory, sshd, smtp_server
):
    load_inventory(
        [host_entry("web1", sshd)],
        trust=[sshd],
        backup_approver=BACKUP,
        approval_policy={"escalate_after_hours": 4, "expire_after_hours": 72},
    )
    bg = run_inspection()
    gate = pending(engine, "inspection-plan")
    wait_for_code(smtp_server, PAUL)
    answer_too_early = approval_watchdog(now=gate.requested_at + timedelta(hours=1))
    assert answer_too_early.escalated == [] and codes_sent(smtp_server, BOB) == []
    first = approval_watchdog(now=gate.requested_at + timedelta(hours=5))
    again = approval_watchdog(now=gate.requested_at + timedelta(hours=6))
    assert first.escalated == [gate.id] and again.escalated == []
    bob = wait_for_code(smtp_server, BOB)
    assert len(codes_sent(smtp_server, BOB)) == 1  # escalated once, mailed once
    answer(gate, decision="approve", approver="Bob Backup", code=bob, comment="covering")
    assert bg.state().is_completed()
    assert decision(engine, gate.id) == ("approve", "Bob Backup")
    assert [k for k, _ in events(engine, gate.id)].count("escalated") == 1


def test_expiry_ends_the_run_and_tells_everyone(engine, load_inventory, sshd, smtp_server):
    from prefect.client.orchestration import get_client

    load_inventory(
        [host_entry("web1", sshd)],
        trust=[sshd],
        approval_policy={"escalate_after_hours": None, "expire_after_hours": 0.004},
    )
    bg = run_inspection(requested_by="eve@provider.example")
    gate = pending(engine, "inspection-plan")
    wait_for_code(smtp_server, ALICE)
    report = approval_watchdog(now=gate.requested_at + timedelta(hours=1))
    assert report.expired == [gate.id] and report.runs_ended == [gate.id]
    assert approval_watchdog(now=gate.requested_at + timedelta(hours=2)).expired == []
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(gate.flow_run_id)).state
    assert state is not None and state.is_cancelled() and "expired" in (state.message or "")
    assert decision(engine, gate.id)[0] == "expired"

    def notices() -> list:
        return [
            m
            for m in smtp_server.handler.received
            if "expired" in str(m.message()["subject"]).lower()
        ]

    (notice,) = wait_until("the expiry notice", notices)
    assert sorted(notice.rcpt_tos) == sorted([ALICE, PAUL, "eve@provider.example"])
    bg.thread.join(60)  # the paused process gives up at its own deadline
    with pytest.raises(NotPausedError):
        resume_flow_run(
            UUID(gate.flow_run_id),
            run_input={"decision": "approve", "approver": "Alice Owner", "code": "ABCDE-FGHJK"},
        )


def test_cancelling_a_paused_run_closes_its_gate_and_ends_the_wait(
    engine, load_inventory, sshd, smtp_server
):
    """The UI's Cancel on an interactive run paused at its gate: the waiting process leaves
    at once (not at the pause's deadline) and the gate is closed with the reason."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    bg = run_inspection()
    gate = pending(engine, "inspection-plan")
    wait_for_code(smtp_server, PAUL)
    wait_until("the gate to pause", lambda: paused(gate.flow_run_id))
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(gate.flow_run_id), Cancelling(message="stop it"))
    state = bg.state()
    assert state.is_cancelled(), state
    decided, _ = decision(engine, gate.id)
    assert decided == "cancelled"
    with Session(engine) as s:
        row = s.get(Approval, gate.id)
        assert row is not None and "stop it" in (row.comment or "")
    assert [k for k, _ in events(engine, gate.id)].count("refused") == 0
