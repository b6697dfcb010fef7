"""What an approver and an engineer see on the paused run: the approval and revision forms.

Pure functions (``describe``, ``render_plan_markdown``, ``render_revision_form``), checked as
text and through the Prefect UI's own Markdown lexer with hostile names everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.ui_markdown import active, shown_text, ui_tokens, walk
from upkeep.domain.approval_form import describe, describe_refusals, format_deadline
from upkeep.domain.approvals import ApprovalRequest, Person
from upkeep.domain.contract import GatePolicy
from upkeep.domain.inspection import InspectionPlan, PlanHost, render_plan_markdown
from upkeep.domain.markup import markdown_plain
from upkeep.flows.inspection_gate import render_revision_form

LINK = "<a href=https://evil.example>Mallory</a>"
MD_LINK = "[click](javascript:alert(1))"
OPENED = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def plan(**changes: object) -> InspectionPlan:
    base = InspectionPlan(
        contract="ACME-1",
        contract_id=1,
        contract_name=f"Main {MD_LINK}",
        customer="ACME & Söhne <GmbH>",
        timezone="Europe/Berlin",
        window="2026-Q4",
        hosts=[
            PlanHost(id=1, name="web-1", address="10.0.0.1", port=22, role="web", tags=["prod"]),
            PlanHost(id=2, name=LINK, address="10.0.0.2", port=2222, role="*db*|x"),
        ],
        checks=[("disk", "Disk space"), ("updates", "Pending updates")],
        thresholds={"disk_major": 90, "disk_critical": None},
        approvers=[],
        requires_approval=True,
        preflight={"web-1": "ok", LINK: "cannot log in: `auth` refused " + "x" * 300},
    )
    return base.model_copy(update=changes)


def request(**changes: object) -> ApprovalRequest:
    base = ApprovalRequest(
        gate="inspection-plan",
        key="inspection-plan-r1",
        contract="ACME-1",
        subject=f"health inspection plan ACME-1 2026-Q4 {LINK}",
        evidence=render_plan_markdown(plan()),
        approvers=[
            Person(name="Dana Owner", email="dana@example.com"),
            Person(name=LINK, email="mallory@example.com"),
            Person(name="Eve Engineer", email="eve@example.com"),
        ],
        backup_approver=Person(name="Carl *Backup*", email="carl@example.com"),
        requested_by="eve@example.com",
        policy=GatePolicy(required_approvals=2, escalate_after_hours=4, expire_after_hours=72),
        timezone="Europe/Berlin",
    )
    return base.model_copy(update=changes)


def no_markup(markdown: str) -> list[dict[str, object]]:
    """The UI's tokens for ``markdown``, after checking no link, image or HTML is among them."""
    (tree,) = ui_tokens([markdown])
    assert active(tree) == [], active(tree)
    return tree


# --- the approval form -----------------------------------------------------------------------


def test_form_puts_refusals_progress_deciders_and_deadline_before_the_evidence() -> None:
    refusals = [
        f"{LINK!r} may not decide this gate",
        "wrong code for this gate",
    ]
    text = describe(request(), refusals, approved_by=["Dana Owner"], opened_at=OPENED)

    order = [
        "**Approval needed:** health inspection plan ACME-1 2026-Q4 &lt;a href",
        "**Earlier answers were refused** (2, newest last):",
        "- wrong code for this gate",
        "**1 of 2 approved** (Dana Owner); 1 more needed.",
        "**Who may still decide:**",
        "**Decide before:** 2026-12-04 09:00 CET (Europe/Berlin).",
        "Undecided at 2026-12-01 13:00 CET (Europe/Berlin), it goes to the backup approver",
        "Choose *approve* or *reject*",
        "### Health inspection plan",
    ]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions)


def test_who_may_still_decide_leaves_out_who_approved_and_the_starter() -> None:
    text = describe(request(), [], approved_by=["Dana Owner"], opened_at=OPENED)
    line = next(line for line in text.splitlines() if "Who may still decide" in line)
    assert line == (
        "- **Who may still decide:** &lt;a href=https\\://evil.example&gt;Mallory&lt;/a&gt;."
    )
    allowed = request(policy=GatePolicy(required_approvals=2, allow_self_approval=True))
    text = describe(allowed, [], approved_by=["Dana Owner"])
    assert "Eve Engineer." in next(line for line in text.splitlines() if "Who may" in line)


def test_after_escalation_the_backup_approver_may_decide_and_is_named() -> None:
    text = describe(request(), [], escalated=True, opened_at=OPENED)
    assert "Carl \\*Backup\\* (backup approver)." in text
    assert "escalated to the backup approver Carl \\*Backup\\*." in text
    assert "Undecided at" not in text  # it already went to the backup


def test_a_one_approval_gate_shows_no_progress_line() -> None:
    text = describe(request(policy=GatePolicy()), [])
    assert " approved**" not in text and "Decide before" not in text  # no opening time known
    assert "**Who may still decide:** Dana Owner, " in text


def test_nobody_left_is_said_plainly() -> None:
    only_starter = request(approvers=[Person(name="Eve", email="eve@example.com")])
    assert "**Nobody who may decide is left to answer this gate.**" in describe(only_starter, [])


def test_the_deadline_is_in_the_contracts_timezone() -> None:
    assert format_deadline(OPENED, "America/New_York") == "2026-12-01 03:00 EST (America/New_York)"
    naive = OPENED.replace(tzinfo=None)  # SQLite drops the offset: the value is UTC
    assert format_deadline(naive, "Europe/Berlin") == "2026-12-01 09:00 CET (Europe/Berlin)"
    assert format_deadline(OPENED, "Not/AZone") == "2026-12-01 08:00 UTC (UTC)"
    text = describe(request(timezone="Asia/Tokyo"), [], opened_at=OPENED)
    assert "**Decide before:** 2026-12-04 17:00 JST (Asia/Tokyo)." in text


def test_refusals_show_the_newest_five_and_count_the_rest() -> None:
    block = describe_refusals([f"reason {i}" for i in range(8)])
    lines = block.splitlines()
    assert lines[0] == "**Earlier answers were refused** (8, newest last):"
    assert lines[1] == "- … 3 earlier refusal(s) not shown"
    assert lines[2:] == [f"- reason {i}" for i in range(3, 8)]
    assert describe_refusals([]) == ""


def test_hostile_text_in_the_form_shows_as_text_in_the_prefect_ui() -> None:
    refusals = [f"{LINK!r} may not decide this gate", f"bad answer: {MD_LINK} <script>x</script>"]
    text = describe(request(), refusals, approved_by=[LINK], escalated=True, opened_at=OPENED)
    tree = no_markup(text)
    seen = shown_text(tree)
    assert LINK in seen and MD_LINK in seen and "<script>x</script>" in seen
    assert "Carl *Backup*" in seen and "ACME & Söhne <GmbH>" in seen
    kinds = [t["type"] for t in walk(tree)]
    assert kinds.count("heading") == 1  # the plan's; no name made one
    assert kinds.count("table") == 1  # the plan's hosts; no pipe broke it
    (table,) = [t for t in walk(tree) if t["type"] == "table"]
    assert [len(r) for r in table["rows"]] == [5, 5]


# --- the plan and the revision form ----------------------------------------------------------


def test_the_plan_escapes_every_inventory_value_and_keeps_its_table() -> None:
    md = render_plan_markdown(plan())
    tree = no_markup(md)
    (table,) = [t for t in walk(tree) if t["type"] == "table"]
    rows = [[shown_text(cell) for cell in row] for row in table["rows"]]
    assert rows[0] == ["web-1", "10.0.0.1:22", "web", "prod", "ok"]
    assert rows[1][:4] == [LINK, "10.0.0.2:2222", "*db*|x", ""]
    assert rows[1][4].startswith("cannot log in: `auth` refused xxx") and rows[1][4].endswith("…")
    assert len(rows[1][4]) == 120
    assert f"Main {MD_LINK}" in shown_text(tree)


@pytest.mark.parametrize("problems", [[], [f"unknown host(s): {LINK}", "not valid (1 error(s))"]])
def test_the_revision_form_shows_the_rejection_first_and_the_plan_compactly(
    problems: list[str],
) -> None:
    rejection = f"Dana Owner: leave out {LINK}, and **not** this quarter\nsecond line"
    md = render_revision_form(plan(notes=["rev 2 by eve: first try"]), rejection, problems)
    lines = md.splitlines()
    # First line: the rejection, on one line however many the comment had.
    assert lines[0].startswith(
        "**The plan (revision 1) was rejected:** Dana Owner: leave out &lt;a href"
    )
    assert lines[0].endswith("this quarter second line")
    if problems:
        assert lines[2] == "**Your earlier answer was refused** (2, newest last):"
    hosts = [line for line in lines if line.startswith("- ") and " · " in line]
    # One short line per host as the reader sees it: long pre-check errors are cut.
    assert len(hosts) == 2 and all(len(markdown_plain(line)) < 200 for line in hosts)
    assert max(len(markdown_plain(line)) for line in lines) < 400
    assert "|" not in md.replace("\\|", "")  # no wide table: readable in a normal window
    tree = no_markup(md)
    seen = shown_text(tree)
    assert LINK in seen and "**not** this quarter second line" in seen
    assert "rev 2 by eve: first try" in seen
    kinds = [t["type"] for t in walk(tree)]
    assert "heading" not in kinds and "table" not in kinds  # compact: no big or wide blocks
    (first,) = [t for t in tree if t["type"] == "paragraph"][:1]
    strong = [t for t in walk(first["tokens"]) if t["type"] == "strong"]
    assert [shown_text(t["tokens"]) for t in strong] == ["The plan (revision 1) was rejected:"]
