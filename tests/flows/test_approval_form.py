"""The approval form on a real paused run: what the next approver reads in the Prefect UI.

A stranger's answer under a hostile name is refused by the form (the approver is a choice of
the contract's names), a wrong code is refused by the flow, one of two approvers approves, and the
form the run waits with next is read back from the Prefect server and lexed by the UI's own
Markdown renderer: the refusal first, then "1 of 2 approved", who may still decide, the
deadline in the contract's timezone, then the plan; every name shown as text.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from tests.flow_fixtures import host_entry, wait_for_code
from tests.inspection_helpers import ALICE, PAUL, answer, paused, pending, run_inspection
from tests.polling import wait_until
from tests.ui_markdown import active, shown_text, ui_tokens, walk

pytestmark = pytest.mark.flows

STRANGER = "<a href=https://evil.example>Mallory</a>"
HOSTILE_ROLE = "**db** | <script>alert(1)</script>"


def form_description(flow_run_id: str) -> str | None:
    """The description of the form the run waits with now (None while it is not paused)."""
    from prefect.client.orchestration import get_client
    from prefect.input.actions import read_flow_run_input

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    if state is None or not state.is_paused():
        return None
    keyset: dict[str, Any] | None = state.state_details.run_input_keyset
    if not keyset:
        return None
    value = read_flow_run_input(keyset["description"], flow_run_id=UUID(flow_run_id))
    return value if isinstance(value, str) else None


def test_the_next_approver_sees_refusals_progress_deciders_and_deadline_first(
    engine, load_inventory, sshd, smtp_server
):
    load_inventory(
        [host_entry("web1", sshd, role=HOSTILE_ROLE)],
        trust=[sshd],
        name="ACME <b>ops</b>",
        approval_policy={"required_approvals": 2},
    )
    bg = run_inspection()
    gate = pending(engine, "inspection-plan")
    first = wait_until("the first form", lambda: form_description(gate.flow_run_id))
    assert "Earlier answers were refused" not in first

    # A stranger's name is not among the form's choices: the server refuses it unseen.
    with pytest.raises(RuntimeError, match="approver"):
        answer(gate, decision="approve", approver=STRANGER, code="ABCDE-FGHJK")
    answer(gate, decision="approve", approver="Alice Owner", code="ABCDE-FGHJK")
    wait_until(
        "the form after the refusal",
        lambda: "refused" in (form_description(gate.flow_run_id) or ""),
    )
    answer(gate, decision="approve", approver="Alice Owner", code=wait_for_code(smtp_server, ALICE))
    text = wait_until(
        "the form after one approval",
        lambda: (d := form_description(gate.flow_run_id)) and "1 of 2 approved" in d and d,
    )

    order = [
        "**Approval needed:** health inspection plan ACME",
        "**Earlier answers were refused** (1, newest last):",
        "**1 of 2 approved** (Alice Owner); 1 more needed.",
        "**Who may still decide:** Paul Lead.",
        "**Decide before:** ",
        "### Health inspection plan · ACME Retail · ACME",
    ]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions), text
    deadline = next(line for line in text.splitlines() if "Decide before" in line)
    assert deadline.endswith("(Europe/Berlin).") and (" CET " in deadline or " CEST " in deadline)

    (tree,) = ui_tokens([text])
    assert active(tree) == []  # no name became a link, an image or HTML
    seen = shown_text(tree)
    assert STRANGER not in seen
    assert "ACME <b>ops</b>" in seen and HOSTILE_ROLE in seen
    (table,) = [t for t in walk(tree) if t["type"] == "table"]
    assert [len(row) for row in table["rows"]] == [5]  # the hostile role did not split a cell

    # Paul's code mail, sent by the gate itself: the plan rendered, names escaped, the run
    # in the subject, the deadline in the contract's timezone.
    paul = wait_for_code(smtp_server, PAUL)
    (mail,) = [m.message() for m in smtp_server.handler.received if PAUL in m.rcpt_tos]
    assert mail["Subject"].endswith(f"· run {gate.flow_run_id[:8]}")
    html_part = mail.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert "<table" in html and "<script>" not in html and "### " not in html
    assert "**db** \\| &lt;script&gt;alert(1)&lt;/script&gt;" not in html  # not left as Markdown
    assert "**db** | &lt;script&gt;alert(1)&lt;/script&gt;</td>" in html
    assert "ACME &lt;b&gt;ops&lt;/b&gt;" in html and "(Europe/Berlin)" in html

    answer(gate, decision="approve", approver="Paul Lead", code=paul)
    assert bg.state().is_completed()
    assert not paused(gate.flow_run_id)
