"""The customer approval page as it runs in production: started by ``upkeep serve``, reached
over real HTTP through the personal link mailed to each approver, deciding a served
inspection that a real ``prefect server start`` holds suspended at its gate.

Each test opens the link from the mail sink with a cookie-keeping client (as a browser would),
reads the form's CSRF value and posts Approve or Reject from the page's own origin; the page
resumes the run server-side and says what the flow made of the decision. The same rules apply
as to any answer: M of N, escalation to the backup approver, expiry by the served watchdog.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from tests.production.stack import Api, Served, ServeUpkeep
from upkeep.demo import CSRF_RE
from upkeep.domain.contract import GatePolicy
from upkeep.models import Approval, ApprovalCode, ApprovalEvent, ApprovalLink

pytestmark = pytest.mark.production

ALICE = {"name": "Alice Owner", "email": "alice@customer.example"}
PAUL = {"name": "Paul Lead", "email": "paul@provider.example"}
BOB = "bob@provider.example"
RUN = 240.0
FORM = "<form"


# --- the records of the served instance ------------------------------------------------------


@dataclass
class Gate:
    row: Approval
    events: list[tuple[str, str | None]]
    links: list[ApprovalLink]
    codes: list[ApprovalCode]

    @property
    def judged(self) -> list[tuple[str, str | None]]:
        return [(k, a) for k, a in self.events if k in ("approved", "refused", "decided")]


def gates(served: Served, kind: str = "inspection-plan") -> list[Gate]:
    """The served instance's gates of ``kind``, oldest first, with their log, links and codes."""
    engine = sa.create_engine(f"sqlite:///{served.workdir / 'data' / 'upkeep.db'}")
    try:
        with Session(engine) as s:
            out = []
            query = select(Approval).where(Approval.gate == kind).order_by(col(Approval.id))
            for row in s.exec(query):
                events = s.exec(
                    select(ApprovalEvent)
                    .where(ApprovalEvent.approval_id == row.id)
                    .order_by(col(ApprovalEvent.id))
                )
                links = s.exec(select(ApprovalLink).where(ApprovalLink.approval_id == row.id))
                codes = s.exec(select(ApprovalCode).where(ApprovalCode.approval_id == row.id))
                out.append(Gate(row, [(e.kind, e.actor) for e in events], list(links), list(codes)))
            return out
    finally:
        engine.dispose()


def only_gate(served: Served) -> Gate:
    (gate,) = gates(served)
    return gate


# --- a person's browser on one link -----------------------------------------------------------


@dataclass
class Browser:
    """One approver's browser on one link: keeps the page's cookie and the form's CSRF value
    from the last page that offered a form; posts from the page's own origin."""

    link: str
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=120))
    csrf: str | None = None

    @property
    def origin(self) -> str:
        return self.link.split("/a/")[0]

    @property
    def token(self) -> str:
        return self.link.rsplit("/a/", 1)[1]

    def open(self) -> httpx.Response:
        page = self.http.get(self.link)
        if found := CSRF_RE.search(page.text):
            self.csrf = found.group(1)
        return page

    def post(self, decision: str, comment: str = "") -> httpx.Response:
        assert self.csrf, "no page of this link offered a form"
        return self.http.post(
            self.link,
            data={"csrf": self.csrf, "decision": decision, "comment": comment},
            headers={"origin": self.origin},
        )


@pytest.fixture
def browsers() -> Iterator[list[Browser]]:
    opened: list[Browser] = []
    yield opened
    for b in opened:
        b.http.close()


def link_of(served: Served, address: str, count: int = 1) -> str:
    """The newest link mailed to ``address`` once it has been mailed ``count``; it points at
    the page ``upkeep serve`` started."""
    link = served.mailbox.wait_link(address, count, timeout=RUN)
    assert link.startswith(f"{served.page_url}/a/"), link
    return link


def browse(browsers: list[Browser], link: str) -> Browser:
    b = Browser(link)
    browsers.append(b)
    return b


def decide(prod_api: Api, run_id: str, b: Browser, decision: str, comment: str = "") -> str:
    """Open the page once the run waits at its gate, press the button; the page's text."""
    prod_api.wait_paused(run_id, timeout=RUN)
    page = b.open()
    assert page.status_code == 200 and FORM in page.text, page.text
    done = b.post(decision, comment)
    assert done.status_code == 200, done.text
    return done.text


def start(prod_api: Api, served: Served) -> str:
    """A run of the served inspection deployment, as the UI's Run button creates it."""
    return prod_api.start("inspection", served.contract.lower())


# --- the tests --------------------------------------------------------------------------------


def test_approve_from_the_link_completes_the_run_and_the_link_dies(
    serve_upkeep: ServeUpkeep, prod_api: Api, browsers: list[Browser]
) -> None:
    served = serve_upkeep("PAGEOK")
    run_id = start(prod_api, served)
    alice = browse(browsers, link_of(served, ALICE["email"]))
    prod_api.wait_paused(run_id, timeout=RUN)

    page = alice.open()
    assert page.status_code == 200, page.text
    gate = only_gate(served)
    deadline = gate.row.requested_at.replace(tzinfo=UTC) + timedelta(
        hours=GatePolicy.model_validate(gate.row.policy).expire_after_hours
    )
    local = deadline.astimezone(ZoneInfo("Europe/Berlin"))
    assert local.tzname() in ("CET", "CEST")
    for shown in (
        "web1",  # the plan
        "PAGEOK · PAGEOK operations",
        "PAGEOK GmbH",
        f"{local:%Y-%m-%d %H:%M %Z} (Europe/Berlin)",
        "Alice Owner",
        "0 of 1 needed",
        FORM,
    ):
        assert shown in page.text, shown
    csp = page.headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in page.text.lower()

    done = alice.post("approve")
    assert done.status_code == 200, done.text
    assert "Accepted: the request is approved" in done.text
    assert "1 of 1 needed" in done.text and FORM not in done.text
    prod_api.wait_state(run_id, "COMPLETED", timeout=RUN)
    gate = only_gate(served)
    assert (gate.row.decision, gate.row.approver) == ("approve", "Alice Owner")
    assert gate.judged == [("approved", "Alice Owner"), ("decided", "Alice Owner")]

    # the same link afterwards explains itself and offers nothing
    again = alice.http.get(alice.link)
    assert again.status_code == 410, again.text
    assert "This request was approved" in again.text and "Alice Owner" in again.text
    assert FORM not in again.text
    # a second decision through it, with the form of the first visit, is refused
    before = only_gate(served)
    refused = alice.post("reject", "changed my mind")
    assert refused.status_code == 410, refused.text
    assert "This request was approved" in refused.text
    after = only_gate(served)
    assert (after.row.decision, after.row.approver) == ("approve", "Alice Owner")
    assert after.events == before.events
    assert len(after.codes) == len(before.codes)

    # the token is nowhere but in the mail: not in the serve log (with the page's access
    # log), not in the database
    log = served.log()
    assert '"GET /a/<token>" 200' in log and '"POST /a/<token>" 410' in log, log[-3000:]
    assert alice.token not in log
    for stored in (served.workdir / "data").glob("upkeep.db*"):
        assert alice.token.encode() not in stored.read_bytes(), stored


def test_reject_with_a_comment_then_approve_the_revised_plan(
    serve_upkeep: ServeUpkeep, prod_api: Api, browsers: list[Browser]
) -> None:
    served = serve_upkeep("PAGEREV")
    run_id = start(prod_api, served)
    first = browse(browsers, link_of(served, ALICE["email"]))
    prod_api.wait_paused(run_id, timeout=RUN)

    # a rejection without a reason is refused by the page; nothing is recorded
    assert first.open().status_code == 200
    before = only_gate(served)
    empty = first.post("reject", "   ")
    assert empty.status_code == 400, empty.text
    assert "a rejection needs a reason" in empty.text and FORM in empty.text
    after = only_gate(served)
    assert after.row.decision is None and after.events == before.events
    assert [link.used_at for link in after.links] == [None]
    assert len(after.codes) == len(before.codes)

    text = decide(prod_api, run_id, first, "reject", "move it to Monday night")
    assert "Accepted: the request is rejected" in text
    rejected = gates(served)[0]
    assert (rejected.row.decision, rejected.row.approver) == ("reject", "Alice Owner")
    assert rejected.row.comment == "move it to Monday night"

    result = prod_api.answer(
        run_id,
        {"action": "resubmit", "engineer": "Eve", "window": "Monday night", "note": "moved"},
        timeout=RUN,
    )
    assert result["status"] == "ACCEPT", result
    second = browse(browsers, link_of(served, ALICE["email"], 2))
    assert second.link != first.link

    old = first.http.get(first.link)
    assert old.status_code == 410, old.text
    assert "This request was replaced by a revised one" in old.text and FORM not in old.text

    text = decide(prod_api, run_id, second, "approve")
    assert "Accepted: the request is approved" in text
    assert "Monday night" in text  # the revised plan
    prod_api.wait_state(run_id, "COMPLETED", timeout=RUN)
    plans = gates(served)
    assert [(g.row.decision, g.row.approver) for g in plans] == [
        ("reject", "Alice Owner"),
        ("approve", "Alice Owner"),
    ]


def test_two_of_two_approvers_each_through_their_own_link(
    serve_upkeep: ServeUpkeep, prod_api: Api, browsers: list[Browser]
) -> None:
    served = serve_upkeep(
        "PAGEMN",
        approvers=[ALICE, PAUL],
        approval_policy={"required_approvals": 2},
    )
    run_id = start(prod_api, served)
    alice = browse(browsers, link_of(served, ALICE["email"]))
    paul = browse(browsers, link_of(served, PAUL["email"]))

    text = decide(prod_api, run_id, alice, "approve")
    assert "Accepted: your approval is recorded" in text
    assert "Waiting for 1 more approval " in text
    mine = alice.open()
    assert mine.status_code == 200, mine.text
    assert "Your approval is on record" in mine.text and FORM not in mine.text
    assert "1 of 2 needed" in mine.text and "Alice Owner approved" in mine.text

    text = decide(prod_api, run_id, paul, "approve")
    assert "Accepted: the request is approved" in text
    prod_api.wait_state(run_id, "COMPLETED", timeout=RUN)
    gate = only_gate(served)
    assert (gate.row.decision, gate.row.approver) == ("approve", "Alice Owner, Paul Lead")
    assert gate.judged == [
        ("approved", "Alice Owner"),
        ("approved", "Paul Lead"),
        ("decided", "Alice Owner, Paul Lead"),
    ]


def test_the_backup_approver_decides_through_the_link_of_the_escalation(
    serve_upkeep: ServeUpkeep, prod_api: Api, browsers: list[Browser]
) -> None:
    served = serve_upkeep(
        "PAGEESC",
        approval_policy={"escalate_after_hours": 0.005, "expire_after_hours": 1},
    )
    run_id = start(prod_api, served)
    link_of(served, ALICE["email"])
    bob = browse(browsers, link_of(served, BOB))  # the served watchdog escalated
    text = decide(prod_api, run_id, bob, "approve")
    assert "Accepted: the request is approved" in text
    prod_api.wait_state(run_id, "COMPLETED", timeout=RUN)
    gate = only_gate(served)
    assert (gate.row.decision, gate.row.approver) == ("approve", "Bob Backup")
    assert [k for k, _ in gate.events].count("escalated") == 1
    assert gate.judged[-2:] == [("approved", "Bob Backup"), ("decided", "Bob Backup")]


def test_an_expired_gate_leaves_a_link_that_explains_itself_and_decides_nothing(
    serve_upkeep: ServeUpkeep, prod_api: Api, browsers: list[Browser]
) -> None:
    served = serve_upkeep(
        "PAGEEXP",
        approval_policy={"escalate_after_hours": None, "expire_after_hours": 0.005},
    )
    run_id = start(prod_api, served)
    alice = browse(browsers, link_of(served, ALICE["email"]))
    opened = alice.open()  # while the gate is still open: the form and its CSRF value
    assert opened.status_code == 200 and FORM in opened.text, opened.text

    prod_api.wait_state(run_id, "CANCELLED", timeout=RUN)  # the served watchdog expired it
    late = alice.http.get(alice.link)
    assert late.status_code == 410, late.text
    assert "This request expired" in late.text and FORM not in late.text
    refused = alice.post("approve")
    assert refused.status_code == 410, refused.text
    assert "This request expired" in refused.text

    gate = only_gate(served)
    assert gate.row.decision == "expired"
    assert gate.judged == []
    assert [link.used_at for link in gate.links] == [None]
    assert [c.email for c in gate.codes] == [ALICE["email"]]  # no code minted for the post
