"""Deciding a gate on the approval page: real HTTP to the running page, a real Prefect run
waiting at the gate, the link from the mail caught by the real SMTP server."""

from __future__ import annotations

from uuid import uuid4

import pytest
from sqlmodel import Session, select

from tests.flow_fixtures import host_entry
from tests.inspection_helpers import ALICE, PAUL, events, pending, run_inspection
from tests.page_fixtures import csrf_of, decide, wait_for_link
from upkeep.db import open_session
from upkeep.domain.contract import GatePolicy
from upkeep.domain.links import new_token
from upkeep.models import Approval, ApprovalCode, ApprovalLink, Contract
from upkeep.tasks.approval_links import add_link
from upkeep.tasks.approval_records import ensure_gate

pytestmark = pytest.mark.flows


def test_an_approver_approves_from_the_link_and_the_run_completes(
    engine, load_inventory, sshd, smtp_server, approval_page
):
    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    bg = run_inspection()
    gate = pending(engine, "inspection-plan")
    link = wait_for_link(smtp_server, ALICE)
    with approval_page.client() as client:
        shown = client.get(link)
        assert shown.status_code == 200
        assert "web1" in shown.text and "ACME" in shown.text
        done = decide(client, link, "approve")
    assert done.status_code == 200, done.text
    assert "Accepted: the request is approved" in done.text
    assert bg.state().is_completed()
    with Session(engine) as s:
        row = s.get(Approval, gate.id)
        assert row is not None and (row.decision, row.approver) == ("approve", "Alice Owner")
        (mine,) = s.exec(select(ApprovalLink).where(ApprovalLink.person == "Alice Owner"))
        assert mine.used_at is not None
    # the page's sending is on record next to the flow's own verdict
    log = events(engine, gate.id)
    assert log.index(("page_sent", "Alice Owner")) < log.index(("decided", "Alice Owner")), log


def test_two_approvers_post_back_to_back_and_both_count(
    engine, load_inventory, sshd, smtp_server, approval_page
):
    """Paul presses Approve the moment Alice's page returns, while the run is still between
    two forms: the page waits for the next form instead of refusing him."""
    load_inventory(
        [host_entry("web1", sshd)], trust=[sshd], approval_policy={"required_approvals": 2}
    )
    bg = run_inspection()
    gate = pending(engine, "inspection-plan")
    alice, paul = wait_for_link(smtp_server, ALICE), wait_for_link(smtp_server, PAUL)
    with approval_page.client() as a, approval_page.client() as p:
        page_a, page_p = a.get(alice), p.get(paul)
        first = a.post(
            alice,
            data={"csrf": csrf_of(page_a.text), "decision": "approve", "comment": ""},
            headers={"origin": approval_page.url},
        )
        second = p.post(
            paul,
            data={"csrf": csrf_of(page_p.text), "decision": "approve", "comment": ""},
            headers={"origin": approval_page.url},
        )
    assert "Accepted: your approval is recorded" in first.text, first.text
    assert "Waiting for 1 more approval" in first.text
    assert "Accepted: the request is approved" in second.text, second.text
    assert bg.state().is_completed()
    with Session(engine) as s:
        row = s.get(Approval, gate.id)
        assert row is not None and row.approver == "Alice Owner, Paul Lead"


def test_a_decision_that_cannot_reach_its_run_is_refused_and_loses_nothing(
    engine, load_inventory, approval_page
):
    """The gate's run is gone from Prefect (or the API is away): the page says nothing was
    recorded, the link works again, and the log says why it was not sent."""
    load_inventory([host_entry("web1", None)])
    with Session(engine) as s:
        contract = s.exec(select(Contract).where(Contract.code == "ACME")).one()
    gate_id = ensure_gate(
        str(uuid4()),
        key="plan-1",
        gate="inspection-plan",
        subject="plan for ACME",
        evidence="**the plan**",
        contract_id=contract.id,
        policy=GatePolicy(),
    )
    token = new_token()
    with open_session() as db:
        add_link(db, gate_id, "Alice Owner", ALICE, "approver", token)
    link = f"{approval_page.url}/a/{token}"
    with approval_page.client() as client:
        assert "the plan" in client.get(link).text
        sent = decide(client, link, "approve")
    assert sent.status_code == 503, sent.text
    assert "Nothing was recorded" in sent.text
    assert events(engine, gate_id)[-2:] == [
        ("page_sent", "Alice Owner"),
        ("page_failed", "Alice Owner"),
    ]
    with Session(engine) as s:
        (mine,) = s.exec(select(ApprovalLink).where(ApprovalLink.approval_id == gate_id))
        assert mine.used_at is None  # the link works again
        assert s.exec(select(ApprovalCode)).first() is None  # the minted code is gone
        row = s.get(Approval, gate_id)
        assert row is not None and row.decision is None
