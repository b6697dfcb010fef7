"""Attacks on the approval page, each over real HTTP to the running page while a real Prefect
run waits at its plan gate: every one is refused and leaves nothing recorded as a decision
(no approved/refused/decided event, the gate pending, the link unused, the run paused).

Two runs: one gate under two required approvals takes the attacks on a waiting gate, a link
for another person and a reused link; one rejected-and-revised plan takes a link for another
round, script in a comment and in the revision note, and the per-address rate limit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from tests.flow_fixtures import host_entry
from tests.inspection_helpers import ALICE, PAUL, answer, events, paused, pending, run_inspection
from tests.page_fixtures import Page, csrf_of, decide, wait_for_link
from tests.polling import wait_until
from upkeep.domain.links import token_hash
from upkeep.models import Approval, ApprovalCode, ApprovalLink

pytestmark = pytest.mark.flows

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"
FAILURES = 5
RECORDS = ("approved", "refused", "decided")


# --- helpers ---------------------------------------------------------------------------------


def guarded(response: httpx.Response, status: int, *texts: str) -> httpx.Response:
    """``response`` has ``status``, shows ``texts`` and carries the security headers."""
    what = f"{response.request.method} {response.request.url.path[:12]}…"
    assert response.status_code == status, f"{what}: {response.status_code} {response.text}"
    for text in texts:
        assert text in response.text, f"{what}: {text!r} not in the page"
    headers = response.headers
    csp = headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, f"{what}: CSP {csp}"
    assert headers.get("x-frame-options") == "DENY", what
    assert headers.get("referrer-policy") == "no-referrer", what
    assert headers.get("x-content-type-options") == "nosniff", what
    return response


def link_row(engine: sa.Engine, link: str) -> ApprovalLink:
    with Session(engine) as s:
        row = s.exec(
            select(ApprovalLink).where(ApprovalLink.token_hash == token_hash(token_of(link)))
        ).one()
        return row


def token_of(link: str) -> str:
    return link.rsplit("/a/", 1)[1]


def nothing_recorded(engine: sa.Engine, gate: Approval, link: str, after: str) -> None:
    """After ``after``: no decision event on the gate, the gate pending, ``link`` unused, no
    code minted through a link, the run still paused at the gate."""
    assert gate.id is not None
    log = events(engine, gate.id)
    assert not [e for e in log if e[0] in RECORDS], f"{after}: recorded {log}"
    with Session(engine) as s:
        row = s.get(Approval, gate.id)
        assert row is not None and row.decision is None, f"{after}: gate {row}"
        minted = s.exec(
            select(ApprovalCode).where(
                ApprovalCode.approval_id == gate.id, col(ApprovalCode.email).startswith("link:")
            )
        ).all()
        assert minted == [], f"{after}: a code was minted for a link"
    assert link_row(engine, link).used_at is None, f"{after}: the link was claimed"
    assert paused(gate.flow_run_id), f"{after}: the run is no longer paused"


def post(client: httpx.Client, link: str, origin: str | None, **form: str) -> httpx.Response:
    headers = {"origin": origin} if origin else {}
    return client.post(link, data=form, headers=headers)


def tampered(link: str) -> str:
    """``link`` with one character of its token changed."""
    base, token = link.rsplit("/a/", 1)
    i = len(token) // 2
    return f"{base}/a/{token[:i]}{'A' if token[i] != 'A' else 'B'}{token[i + 1 :]}"


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog, catching the approval page's access log (whose logger may not propagate)."""
    logger = logging.getLogger("upkeep.approvals.access")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="upkeep.approvals.access")
    yield caplog
    logger.removeHandler(caplog.handler)


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Each access-log record once (it may reach caplog both directly and through root)."""
    unique = {id(r): r for r in caplog.records if r.name == "upkeep.approvals.access"}
    return [f"{r.getMessage()} {r.args!r}" for r in unique.values()]


def assert_no_token_logged(caplog: pytest.LogCaptureFixture, *links: str) -> None:
    lines = access_lines(caplog)
    assert lines, "the page logged no request"
    assert any("/a/<token>" in line for line in lines), lines
    for link in links:
        token = token_of(link)
        leaked = [line for line in lines if token in line or token[:20] in line]
        assert not leaked, f"a token is in the access log: {leaked}"


@pytest.fixture
def few_failures(flow_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A low per-address failure limit; set after flow_env (whose data_dir clears UPKEEP_*)
    and before approval_page builds its settings (list it before approval_page)."""
    monkeypatch.setenv("UPKEEP_APPROVALS_FAILURES_PER_ADDRESS", str(FAILURES))


def client_from(address: str) -> httpx.Client:
    """A client whose requests come from another loopback address."""
    return httpx.Client(
        timeout=120, transport=httpx.HTTPTransport(local_address=address), follow_redirects=False
    )


# --- one gate, two approvals needed ----------------------------------------------------------


def test_attacks_on_a_waiting_gate_record_nothing_and_a_link_decides_only_for_its_person(
    engine, load_inventory, sshd, smtp_server, approval_page: Page, access_log
):
    load_inventory(
        [host_entry("web1", sshd)], trust=[sshd], approval_policy={"required_approvals": 2}
    )
    bg = run_inspection()
    gate = pending(engine, "inspection-plan")
    alice, paul = wait_for_link(smtp_server, ALICE), wait_for_link(smtp_server, PAUL)
    wait_until("the gate to pause", lambda: paused(gate.flow_run_id))
    origin = approval_page.url

    with approval_page.client() as client:
        page = guarded(client.get(alice), 200, "Alice Owner", "web1")
        csrf = csrf_of(page.text)
        paul_csrf = csrf_of(guarded(client.get(paul), 200, "Paul Lead").text)
        approve = {"csrf": csrf, "decision": "approve", "comment": ""}

        # a tampered or truncated token is not a link
        guarded(client.get(tampered(alice)), 404, "This link is not valid")
        guarded(post(client, tampered(alice), origin, **approve), 404, "This link is not valid")
        guarded(client.get(alice[:-1]), 404, "This link is not valid")
        guarded(client.get(alice[:-10]), 404, "This link is not valid")
        nothing_recorded(engine, gate, alice, "tampered tokens")

        # CSRF: no field, a value from Paul's page (same browser), no cookie
        guarded(post(client, alice, origin, decision="approve"), 403, "This form has expired")
        nothing_recorded(engine, gate, alice, "a post without the csrf field")
        stolen = {**approve, "csrf": paul_csrf}
        guarded(post(client, alice, origin, **stolen), 403, "This form has expired")
        nothing_recorded(engine, gate, alice, "a csrf value of Paul's link on Alice's")
        with httpx.Client(timeout=30) as no_cookie:
            guarded(post(no_cookie, alice, origin, **approve), 403, "This form has expired")
        nothing_recorded(engine, gate, alice, "a post without the cookie")

        # another origin, announced or only told by Sec-Fetch-Site
        guarded(post(client, alice, "https://evil.example", **approve), 403, "Refused")
        nothing_recorded(engine, gate, alice, "a post from https://evil.example")
        cross = client.post(alice, data=approve, headers={"sec-fetch-site": "cross-site"})
        guarded(cross, 403, "Refused")
        nothing_recorded(engine, gate, alice, "a cross-site post without Origin")

        # sizes: a comment over 4000 characters, a body over 16384 bytes
        long = guarded(
            post(client, alice, origin, **{**approve, "comment": "x" * 4001}),
            400,
            "The comment is too long (4001 characters; at most 4000).",
        )
        assert 'id="decide"' in long.text, "the form is offered again"
        nothing_recorded(engine, gate, alice, "a comment of 4001 characters")
        huge = post(client, alice, origin, **{**approve, "comment": "x" * 17000})
        assert huge.status_code == 413, huge.text
        guarded(huge, 413)
        nothing_recorded(engine, gate, alice, "a body over 16384 bytes")

        # a link for another person: Paul's link decides as Paul, whatever the form says
        as_alice = {"csrf": paul_csrf, "decision": "approve", "approver": "Alice Owner"}
        done = guarded(
            post(client, paul, origin, **as_alice),
            200,
            "Accepted: your approval is recorded",
            "Waiting for 1 more approval",
        )
        assert "Paul Lead approved" in done.text
        approved = [e for e in events(engine, gate.id) if e[0] == "approved"]
        assert approved == [("approved", "Paul Lead")], approved
        assert link_row(engine, paul).used_at is not None
        assert link_row(engine, alice).used_at is None, "Paul's decision claimed Alice's link"

        # a reused link: Paul posts again with the same page's values
        again = guarded(post(client, paul, origin, **as_alice), 409, "Your approval is on record")
        assert 'id="decide"' not in again.text
        approved = [e for e in events(engine, gate.id) if e[0] == "approved"]
        assert approved == [("approved", "Paul Lead")], f"after the reused link: {approved}"
        assert not [e for e in events(engine, gate.id) if e[0] in ("refused", "decided")]
        assert paused(gate.flow_run_id), "the reused link moved the run"
        shown = guarded(client.get(paul), 200, "Your approval is on record")
        assert 'id="decide"' not in shown.text, "a used link offers a form"

        # Alice's own link still decides after all of the above
        guarded(decide(client, alice, "approve"), 200, "Accepted: the request is approved")

    assert bg.state().is_completed()
    with Session(engine) as s:
        row = s.get(Approval, gate.id)
        assert row is not None and row.decision == "approve"
        assert sorted(row.approver.split(", ")) == ["Alice Owner", "Paul Lead"]
    approved = [e for e in events(engine, gate.id) if e[0] == "approved"]
    assert approved == [("approved", "Paul Lead"), ("approved", "Alice Owner")], approved
    assert_no_token_logged(access_log, alice, paul, tampered(alice))


# --- a rejected plan, its revision, and the rate limit ---------------------------------------


def test_a_rejected_rounds_link_cannot_decide_the_revision_and_script_stays_text(
    engine, load_inventory, sshd, smtp_server, few_failures, approval_page: Page, access_log
):
    assert approval_page.settings.approvals.failures_per_address == FAILURES
    load_inventory([host_entry("web1", sshd)], trust=[sshd])
    bg = run_inspection()
    first = pending(engine, "inspection-plan")
    alice1, paul1 = wait_for_link(smtp_server, ALICE), wait_for_link(smtp_server, PAUL)
    wait_until("the gate to pause", lambda: paused(first.flow_run_id))
    origin = approval_page.url

    with approval_page.client() as client:
        csrf1 = csrf_of(guarded(client.get(alice1), 200).text)
        # a form refused for its decision shows the comment again, as text
        again = guarded(
            post(client, alice1, origin, csrf=csrf1, decision="maybe", comment=HOSTILE),
            400,
            "Choose Approve or Reject.",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
        )
        assert "<script" not in again.text and "<img" not in again.text
        nothing_recorded(engine, first, alice1, "a post without a valid decision")

        done = guarded(
            decide(client, alice1, "reject", HOSTILE), 200, "Accepted: the request is rejected"
        )
        assert "<script" not in done.text and "<img" not in done.text
        with Session(engine) as s:
            row = s.get(Approval, first.id)
            assert row is not None and (row.decision, row.comment) == ("reject", HOSTILE)

        # the dead link's page shows the gate's comment, escaped
        for link in (paul1, alice1):
            dead = guarded(
                client.get(link),
                410,
                "This request was rejected",
                "Decided by Alice Owner: &lt;script&gt;alert(1)&lt;/script&gt;&lt;img",
            )
            assert "<script" not in dead.text and "<img" not in dead.text
            assert 'name="csrf"' not in dead.text, "a dead link offers a form"

        answer(
            pending(engine, "inspection-plan-revision"),
            action="resubmit",
            engineer="Eve Engineer",
            note=HOSTILE,
        )
        second = pending(engine, "inspection-plan", after=first.id)
        alice2 = wait_for_link(smtp_server, ALICE, nth=2)
        assert alice2 != alice1
        wait_until("round 2 to pause", lambda: paused(second.flow_run_id))

        # Alice's round-1 link cannot decide round 2
        guarded(client.get(alice1), 410, "This request was replaced by a revised one")
        old = post(client, alice1, origin, csrf=csrf1, decision="approve", comment="")
        guarded(old, 410, "This request was replaced by a revised one")
        nothing_recorded(engine, second, alice2, "a post with the round-1 link")

        # the revised plan's note (the engineer's text) is shown as text on the new link
        fresh = guarded(client.get(alice2), 200, "Revision notes", "&lt;script&gt;alert(1)")
        assert "<script" not in fresh.text and "<img" not in fresh.text
        assert 'id="decide"' in fresh.text

    # the rate limit: bad tokens from one address end in 429 ...
    with client_from("127.0.0.2") as stranger:
        for n in range(1, FAILURES + 2):
            forged = stranger.get(tampered(alice2), headers={"x-forwarded-for": f"10.0.0.{n}"})
            if n < FAILURES:
                guarded(forged, 404, "This link is not valid")
            else:
                guarded(forged, 429, "Too many attempts")
                assert int(forged.headers["retry-after"]) >= 1
        nothing_recorded(engine, second, alice2, "bad tokens up to the rate limit")
        # ... and never deny the real approver at that address
        guarded(stranger.get(alice2), 200, "Revision notes")
        guarded(decide(stranger, alice2, "approve"), 200, "Accepted: the request is approved")

    assert bg.state().is_completed()
    with Session(engine) as s:
        row = s.get(Approval, second.id)
        assert row is not None and (row.decision, row.approver) == ("approve", "Alice Owner")
    assert_no_token_logged(access_log, alice1, paul1, alice2, tampered(alice2))
