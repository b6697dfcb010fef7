"""Personal approval links, pure: tokens, what a link may still do, CSRF values, rate limits.

A link names one person and one gate through a random token (256 bits from :mod:`secrets`);
only :func:`token_hash` of it is stored. :func:`link_state` decides, from the gate's records,
whether the link still offers a decision and, if not, why (used, decided, expired, superseded,
closed), in words for the page. No I/O here: the approval page (:mod:`upkeep.web`) and the
gate's records (:mod:`upkeep.tasks.approval_links`) gather the facts.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

TOKEN_BYTES = 32
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
"""What :func:`new_token` makes: 32 bytes, URL-safe base64 without padding."""
PENDING_FOR = timedelta(minutes=10)
"""How long a decision sent through a link may stay unrecorded before the link offers the
form again (the page's process died between claiming the link and resuming the run)."""
MAX_COMMENT = 4000
"""The resume form's limit on a comment (``ApprovalInput.comment``)."""


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def well_formed(token: str) -> bool:
    return bool(TOKEN_RE.fullmatch(token))


def token_hash(token: str) -> str:
    """The SHA-256 hex digest kept in place of the token."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def redact(path: str) -> str:
    """A request path with any link token replaced, for logs."""
    return re.sub(r"/a/[^/?#]+", "/a/<token>", path)


# --- what a link may still do ---------------------------------------------------------------


class LinkState(StrEnum):
    OPEN = "open"
    """The person may decide now."""
    ANSWERED = "answered"
    """This person's approval is on record; the gate waits for others."""
    DECIDED = "decided"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"
    CLOSED = "closed"
    """The run ended without a decision (cancelled, crashed)."""
    PENDING = "pending"
    """A decision through this link was sent; the flow has not recorded it yet."""


@dataclass(frozen=True)
class LinkFacts:
    """What the records say about one link and its gate."""

    person: str
    gate_decision: str | None
    gate_decided_by: str | None
    gate_decided_at: datetime | None
    gate_comment: str | None
    deadline: datetime
    approved_by: Sequence[str]
    used_at: datetime | None = None
    superseded_at: datetime | None = None
    newer_round: bool = False
    """A later gate of the same run and kind replaced this one (a revised plan)."""


@dataclass(frozen=True)
class LinkView:
    state: LinkState
    headline: str
    detail: str = ""

    @property
    def open(self) -> bool:
        return self.state is LinkState.OPEN


def link_state(facts: LinkFacts, now: datetime) -> LinkView:
    """What the link offers now, and in words why not when it offers nothing."""
    if facts.superseded_at is not None:
        return LinkView(
            LinkState.SUPERSEDED,
            "This link was replaced by a newer one",
            "A newer e-mail for this request carries your current link.",
        )
    decision = facts.gate_decision
    if decision in ("approve", "reject"):
        if facts.newer_round and decision == "reject":
            return LinkView(
                LinkState.SUPERSEDED,
                "This request was replaced by a revised one",
                "The plan was sent back and revised; the e-mail about the revised plan "
                "carries a new link.",
            )
        verb = "approved" if decision == "approve" else "rejected"
        return LinkView(
            LinkState.DECIDED,
            f"This request was {verb}",
            f"Decided by {facts.gate_decided_by or 'nobody on record'}"
            + (f": {facts.gate_comment}" if facts.gate_comment else "."),
        )
    if decision == "expired":
        return LinkView(
            LinkState.EXPIRED,
            "This request expired",
            facts.gate_comment or "Nobody decided before the deadline.",
        )
    if decision is not None:
        return LinkView(
            LinkState.CLOSED,
            "This request is closed",
            facts.gate_comment or f"It was closed ({decision}) without a decision.",
        )
    if now >= facts.deadline:
        return LinkView(
            LinkState.EXPIRED,
            "This request expired",
            "The deadline to decide has passed.",
        )
    if facts.person in facts.approved_by:
        return LinkView(
            LinkState.ANSWERED,
            "Your approval is on record",
            "The request waits for the other approvals it needs.",
        )
    if facts.used_at is not None and now - facts.used_at < PENDING_FOR:
        return LinkView(
            LinkState.PENDING,
            "Your decision was sent",
            "The process is recording it; reload this page in a minute to see the result.",
        )
    return LinkView(LinkState.OPEN, "")


def still_needed(required: int, approved: int) -> int:
    return max(0, required - approved)


def form_problem(decision: str, comment: str) -> str | None:
    """Why a decision posted from the page cannot be sent at all (nothing is recorded)."""
    if decision not in ("approve", "reject"):
        return "Choose Approve or Reject."
    if len(comment) > MAX_COMMENT:
        return f"The comment is too long ({len(comment)} characters; at most {MAX_COMMENT})."
    if decision == "reject" and not comment.strip():
        return "Say in the comment what must change: a rejection needs a reason."
    return None


# --- CSRF -----------------------------------------------------------------------------------


def csrf_value(secret: bytes, cookie: str, token_digest: str) -> str:
    """The form's CSRF value: bound to the browser's cookie and to this link."""
    mac = hmac.new(secret, f"{cookie}:{token_digest}".encode(), hashlib.sha256)
    return mac.hexdigest()


def csrf_ok(secret: bytes, cookie: str | None, token_digest: str, posted: str | None) -> bool:
    if not cookie or not posted or len(cookie) > 100 or len(posted) > 100:
        return False
    return hmac.compare_digest(csrf_value(secret, cookie, token_digest), posted)


# --- rate limits ----------------------------------------------------------------------------


@dataclass
class RateLimit:
    """At most ``limit`` hits per key in a sliding ``window`` (seconds). In memory: one
    approval page process (behind the proxy) keeps its own counts."""

    limit: int
    window: float
    clock: Callable[[], float] = time.monotonic
    _hits: dict[str, deque[float]] = field(default_factory=dict)

    def _live(self, key: str) -> deque[float]:
        now = self.clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return deque()
        return hits

    def exceeded(self, key: str) -> bool:
        return len(self._live(key)) >= self.limit

    def hit(self, key: str) -> None:
        hits = self._live(key)
        hits.append(self.clock())
        self._hits[key] = hits

    def retry_after(self, key: str) -> int:
        hits = self._live(key)
        if not hits:
            return 0
        return max(1, int(hits[0] + self.window - self.clock()) + 1)
