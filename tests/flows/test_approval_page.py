"""Deciding a gate on the approval page: real HTTP to the running page, a real Prefect run
waiting at the gate, the link from the mail caught by the real SMTP server."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from tests.flow_fixtures import host_entry
from tests.inspection_helpers import ALICE, PAUL, events, pending, run_inspection
from tests.page_fixtures import csrf_of, decide, wait_for_link
from upkeep.models import Approval, ApprovalLink

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
