"""Personal approval links, pure (upkeep.domain.links), and the page's guard (security headers,
413, a token-free access log) through the ASGI app on routes that need no database."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from upkeep.domain.links import (
    MAX_COMMENT,
    LinkFacts,
    LinkState,
    RateLimit,
    csrf_ok,
    csrf_value,
    form_problem,
    link_state,
    new_token,
    redact,
    still_needed,
    token_hash,
    well_formed,
)
from upkeep.settings import get_settings, reset_settings
from upkeep.web.app import create_app

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
FACTS = LinkFacts(
    person="Alice Owner",
    gate_decision=None,
    gate_decided_by=None,
    gate_decided_at=None,
    gate_comment=None,
    deadline=NOW + timedelta(hours=72),
    approved_by=(),
)


def state(**changes: object) -> tuple[LinkState, str, str]:
    view = link_state(replace(FACTS, **changes), NOW)  # type: ignore[arg-type]
    return view.state, view.headline, view.detail


# --- link_state ------------------------------------------------------------------------------


def test_a_fresh_link_is_open() -> None:
    view = link_state(FACTS, NOW)
    assert view.state is LinkState.OPEN and view.open


def test_a_person_whose_approval_is_on_record_is_answered_while_others_are_awaited() -> None:
    kind, headline, _ = state(approved_by=("Alice Owner",), used_at=NOW)
    assert kind is LinkState.ANSWERED and headline == "Your approval is on record"
    # someone else's approval leaves Alice's link open
    assert state(approved_by=("Paul Lead",))[0] is LinkState.OPEN


def test_a_used_link_without_a_recorded_answer_is_pending() -> None:
    kind, headline, _ = state(used_at=NOW - timedelta(seconds=5))
    assert kind is LinkState.PENDING and headline == "Your decision was sent"


@pytest.mark.parametrize(("decision", "verb"), [("approve", "approved"), ("reject", "rejected")])
def test_a_decided_gate_names_who_decided_and_why(decision: str, verb: str) -> None:
    kind, headline, detail = state(
        gate_decision=decision, gate_decided_by="Paul Lead", gate_decided_at=NOW, gate_comment="ok"
    )
    assert kind is LinkState.DECIDED
    assert headline == f"This request was {verb}"
    assert detail == "Decided by Paul Lead: ok"


def test_a_decided_gate_without_comment_or_name_still_explains_itself() -> None:
    _, _, detail = state(gate_decision="approve")
    assert detail == "Decided by nobody on record."


def test_an_approved_gate_with_a_later_round_is_still_decided() -> None:
    # only a rejection is replaced by a revised round
    assert state(gate_decision="approve", newer_round=True)[0] is LinkState.DECIDED


def test_a_rejected_gate_with_a_revised_round_is_superseded() -> None:
    kind, headline, detail = state(
        gate_decision="reject", gate_decided_by="Alice Owner", newer_round=True
    )
    assert kind is LinkState.SUPERSEDED
    assert headline == "This request was replaced by a revised one"
    assert "new link" in detail


def test_a_replaced_link_is_superseded_whatever_the_gate_says() -> None:
    for decision in (None, "approve", "expired"):
        kind, headline, _ = state(superseded_at=NOW, gate_decision=decision)
        assert (kind, headline) == (LinkState.SUPERSEDED, "This link was replaced by a newer one")


def test_a_gate_expired_by_the_watchdog_says_why() -> None:
    kind, headline, detail = state(gate_decision="expired", gate_comment="no decision in 72 h")
    assert (kind, headline, detail) == (
        LinkState.EXPIRED,
        "This request expired",
        "no decision in 72 h",
    )
    assert state(gate_decision="expired")[2] == "Nobody decided before the deadline."


def test_a_link_past_its_deadline_is_expired_even_before_the_watchdog_closes_the_gate() -> None:
    assert state(deadline=NOW)[0] is LinkState.EXPIRED
    assert state(deadline=NOW - timedelta(seconds=1))[:2] == (
        LinkState.EXPIRED,
        "This request expired",
    )
    # the deadline wins over an approval on record: nothing more can happen
    assert state(deadline=NOW, approved_by=("Alice Owner",))[0] is LinkState.EXPIRED


@pytest.mark.parametrize("decision", ["cancelled", "crashed", "closed"])
def test_a_gate_closed_without_a_decision_is_closed(decision: str) -> None:
    kind, headline, detail = state(gate_decision=decision)
    assert (kind, headline) == (LinkState.CLOSED, "This request is closed")
    assert decision in detail
    assert state(gate_decision=decision, gate_comment="run cancelled")[2] == "run cancelled"


def test_still_needed_never_goes_below_zero() -> None:
    assert [still_needed(2, n) for n in (0, 1, 2, 3)] == [2, 1, 0, 0]


# --- form_problem ----------------------------------------------------------------------------


def test_form_problem() -> None:
    assert form_problem("approve", "") is None
    assert form_problem("approve", "x" * MAX_COMMENT) is None
    assert form_problem("reject", "db1 is frozen") is None
    assert form_problem("maybe", "") == "Choose Approve or Reject."
    assert form_problem("", "") == "Choose Approve or Reject."
    assert form_problem("reject", "  \n ") is not None
    assert "rejection needs a reason" in (form_problem("reject", "") or "")
    too_long = form_problem("approve", "x" * (MAX_COMMENT + 1))
    assert too_long == "The comment is too long (4001 characters; at most 4000)."


# --- CSRF ------------------------------------------------------------------------------------

SECRET = b"k" * 32
DIGEST = token_hash("A" * 43)


def test_the_csrf_value_is_bound_to_the_cookie_the_link_and_the_key() -> None:
    value = csrf_value(SECRET, "cookie-1", DIGEST)
    assert re.fullmatch(r"[0-9a-f]{64}", value)
    assert csrf_ok(SECRET, "cookie-1", DIGEST, value)
    assert not csrf_ok(SECRET, "cookie-2", DIGEST, value), "another browser's cookie"
    assert not csrf_ok(SECRET, "cookie-1", token_hash("B" * 43), value), "another link"
    assert not csrf_ok(b"j" * 32, "cookie-1", DIGEST, value), "another process's key"
    assert not csrf_ok(SECRET, "cookie-1", DIGEST, value.upper())
    assert not csrf_ok(SECRET, "cookie-1", DIGEST, value[:-1])


def test_csrf_without_cookie_or_value_or_with_oversized_ones_fails() -> None:
    value = csrf_value(SECRET, "cookie-1", DIGEST)
    assert not csrf_ok(SECRET, None, DIGEST, value)
    assert not csrf_ok(SECRET, "", DIGEST, value)
    assert not csrf_ok(SECRET, "cookie-1", DIGEST, None)
    assert not csrf_ok(SECRET, "cookie-1", DIGEST, "")
    big_cookie = "c" * 101
    assert not csrf_ok(SECRET, big_cookie, DIGEST, csrf_value(SECRET, big_cookie, DIGEST))
    assert not csrf_ok(SECRET, "cookie-1", DIGEST, value + "0" * 37)  # 101 characters


# --- RateLimit -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_limit_counts_per_key_and_the_window_slides() -> None:
    clock = FakeClock()
    limit = RateLimit(3, 600.0, clock=clock)
    assert not limit.exceeded("10.0.0.1") and limit.retry_after("10.0.0.1") == 0
    for _ in range(3):
        limit.hit("10.0.0.1")
        clock.now += 100
    assert limit.exceeded("10.0.0.1")
    assert not limit.exceeded("10.0.0.2"), "another address is not affected"
    # first hit at 1000, now 1300: it leaves the window at 1600
    assert limit.retry_after("10.0.0.1") == 301
    clock.now = 1600.0  # the first hit slides out
    assert not limit.exceeded("10.0.0.1")
    limit.hit("10.0.0.1")
    assert limit.exceeded("10.0.0.1")
    clock.now = 1000.0 + 600 + 100 + 600 + 100  # all but the last hit gone
    assert not limit.exceeded("10.0.0.1")
    clock.now += 1000
    assert not limit.exceeded("10.0.0.1") and limit.retry_after("10.0.0.1") == 0
    assert "10.0.0.1" not in limit._hits, "an idle key is forgotten"


def test_retry_after_is_at_least_one_second() -> None:
    clock = FakeClock()
    limit = RateLimit(1, 10.0, clock=clock)
    limit.hit("a")
    clock.now += 9.999
    assert limit.exceeded("a") and limit.retry_after("a") == 1


# --- tokens ----------------------------------------------------------------------------------


def test_tokens_are_43_url_safe_characters_and_only_their_hash_is_kept() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert len(token) == 43 and well_formed(token)
        digest = token_hash(token)
        assert re.fullmatch(r"[0-9a-f]{64}", digest) and digest != token
        assert token not in digest
        assert token_hash(token) == digest
    token = next(iter(tokens))
    assert not well_formed(token[:-1]), "truncated"
    assert not well_formed(token + "A"), "too long"
    assert not well_formed(token[:-1] + "="), "not URL-safe base64"
    assert not well_formed(token[:-1] + "/")
    assert not well_formed(token + "\n")
    assert not well_formed("")
    assert token_hash("é" * 43) != token_hash("?" * 42 + "A")  # no crash on non-ASCII


def test_redact_hides_the_token_in_a_path() -> None:
    token = new_token()
    assert redact(f"/a/{token}") == "/a/<token>"
    assert redact(f"/a/{token}?x=1") == "/a/<token>?x=1"
    assert redact(f"/a/{token}/more") == "/a/<token>/more"
    assert redact("/a/not-even-a-token") == "/a/<token>"
    assert redact("/healthz") == "/healthz"
    assert token not in redact(f"/a/{token}")


# --- the guard, through the ASGI app (no database on these routes) --------------------------


@pytest.fixture
def client(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("UPKEEP_APPROVALS_MAX_BODY_BYTES", "2048")
    reset_settings()
    with TestClient(create_app(get_settings()), raise_server_exceptions=False) as c:
        yield c


def assert_guarded(response) -> None:  # type: ignore[no-untyped-def]
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert "script-src" not in csp or "'none'" in csp
    assert "default-src 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in response.headers  # plain http here
    assert "server" not in response.headers or "uvicorn" not in response.headers["server"]


def test_every_page_carries_the_security_headers(client: TestClient) -> None:
    for path, kind in [
        ("/", "text/html"),
        ("/healthz", "text/plain"),
        ("/static/approvals.css", "text/css"),
        ("/nowhere", "application/json"),
    ]:
        response = client.get(path)
        assert response.status_code == (404 if path == "/nowhere" else 200), path
        assert response.headers["content-type"].startswith(kind), path
        assert_guarded(response)
    assert "<script" not in client.get("/").text


def test_a_body_over_the_limit_is_refused_with_413(client: TestClient) -> None:
    token = new_token()
    form = {"content-type": "application/x-www-form-urlencoded"}
    announced = client.post(f"/a/{token}", content=b"a" * 2049, headers=form)
    assert (announced.status_code, announced.text) == (413, "Request too large.")
    assert_guarded(announced)

    def chunks() -> Iterator[bytes]:
        for _ in range(3):
            yield b"a" * 1000

    streamed = client.post(f"/a/{token}", content=chunks(), headers=form)
    assert "content-length" not in streamed.request.headers
    assert (streamed.status_code, streamed.text) == (413, "Request too large.")
    assert_guarded(streamed)


def test_https_pages_add_hsts(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPKEEP_APPROVALS_PUBLIC_URL", "https://approvals.provider.example")
    reset_settings()
    with TestClient(create_app(get_settings())) as c:
        response = c.get("/healthz")
    assert response.headers["strict-transport-security"].startswith("max-age=")


def test_the_access_log_never_shows_a_token(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    token = new_token()
    access = logging.getLogger("upkeep.approvals.access")
    access.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="upkeep.approvals.access")
    try:
        # a cut-off token is refused before any database is read; a whole one in an
        # oversized post is refused by the guard
        assert client.get(f"/a/{token[:-1]}?from=mail").status_code == 404
        assert client.post(f"/a/{token}", content=b"a" * 4096).status_code == 413
    finally:
        access.removeHandler(caplog.handler)
    # one record may reach caplog twice (through the root logger and directly)
    records = {id(r): r for r in caplog.records if r.name == "upkeep.approvals.access"}
    lines = [r.getMessage() for r in records.values()]
    assert len(lines) == 2, lines
    assert all(token[:-1] not in line and "/a/<token>" in line for line in lines), lines
    assert '"GET /a/<token>" 404' in lines[0]
    assert '"POST /a/<token>" 413' in lines[1]
