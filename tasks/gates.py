"""Approval gates as records: the request, its event log, and response-time figures.

Every gate is one :class:`~models.Approval` row (what was asked, of whom, and the decision)
plus :class:`~models.ApprovalEvent` lines: opened, refused (who, why), decided, expired, and
later notified and escalated. Response times are computed from these records only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from upkeep.db import open_session
from upkeep.domain.approvals import DECISIONS
from upkeep.models import Approval, ApprovalEvent, Contract, utcnow


def log_event(
    *,
    session: Session,
    approval_id: int,
    kind: str,
    actor: str | None = None,
    detail: str = "",
    attempt_key: str | None = None,
) -> ApprovalEvent:
    event = ApprovalEvent(
        approval_id=approval_id, kind=kind, actor=actor, detail=detail, attempt_key=attempt_key
    )
    session.add(event)
    session.flush()
    return event


def open_gate(*, session: Session, **values: Any) -> Approval:
    """A new pending gate with its 'opened' event."""
    row = Approval(**values)
    session.add(row)
    session.flush()
    assert row.id is not None
    log_event(session=session, approval_id=row.id, kind="opened", detail=row.subject)
    return row


def close_gate(
    *,
    session: Session,
    approval_id: int,
    decision: str,
    approver: str | None,
    comment: str,
    attempt_key: str | None = None,
) -> Approval:
    """Record the decision (approve, reject, resubmit, cancel, expired) and its event."""
    row = session.get(Approval, approval_id)
    if row is None:
        raise LookupError(f"no approval {approval_id}")
    row.decision, row.approver, row.comment, row.decided_at = decision, approver, comment, utcnow()
    session.add(row)
    kind = "expired" if decision == "expired" else "decided"
    log_event(
        session=session,
        approval_id=approval_id,
        kind=kind,
        actor=approver,
        detail=f"{decision}: {comment}" if comment else decision,
        attempt_key=attempt_key,
    )
    return row


def events(*, session: Session, approval_id: int) -> list[ApprovalEvent]:
    return list(
        session.exec(
            select(ApprovalEvent)
            .where(ApprovalEvent.approval_id == approval_id)
            .order_by(col(ApprovalEvent.at), col(ApprovalEvent.id))
        )
    )


@dataclass(frozen=True)
class Decided:
    """One decided gate, for the figures."""

    contract: str
    approver: str
    requested_at: datetime
    decided_at: datetime

    @property
    def waited(self) -> timedelta:
        return self.decided_at - self.requested_at


@dataclass(frozen=True)
class ResponseTimes:
    contract: str
    approver: str
    decisions: int
    median: timedelta
    p90: timedelta
    longest: timedelta


def percentile(values: Sequence[timedelta], pct: float) -> timedelta:
    """Nearest-rank percentile: the smallest value with at least ``pct``% at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def response_times(decided: Iterable[Decided]) -> list[ResponseTimes]:
    """Time to decision per contract and approver: median, 90th percentile, longest. Pure."""
    groups: dict[tuple[str, str], list[timedelta]] = {}
    for d in decided:
        groups.setdefault((d.contract, d.approver), []).append(d.waited)
    out = []
    for (contract, approver), waits in sorted(groups.items()):
        seconds = statistics.median(w.total_seconds() for w in waits)
        out.append(
            ResponseTimes(
                contract,
                approver,
                len(waits),
                timedelta(seconds=seconds),
                percentile(waits, 90),
                max(waits),
            )
        )
    return out


@dataclass(frozen=True)
class GateReport:
    times: list[ResponseTimes]
    gates: dict[str, int]
    """Per contract: gates opened in the period."""
    escalations: dict[str, int]
    expiries: dict[str, int]
    pending: dict[str, int]
    refused: dict[str, int] = field(default_factory=dict)
    """Per contract: answers refused (wrong code, not an approver, ...)."""
    replaced: dict[str, int] = field(default_factory=dict)
    """Per contract: codes replaced after wrong codes under one approver's name."""
    planted: dict[str, int] = field(default_factory=dict)
    """Per contract: answers stored under an open form without a resume (removed)."""


def _answers(session: Session, rows: list[tuple[Approval, Contract]]) -> list[Decided]:
    """Each approver's own answer time: their approval (one of M) or their rejection.

    Gates recorded without per-approver events fall back to the gate's decision.
    """
    by_id = {a.id: (a, c) for a, c in rows if a.decision in DECISIONS and a.decided_at}
    out: list[Decided] = []
    seen: set[int] = set()
    if by_id:
        for e in session.exec(
            select(ApprovalEvent).where(
                col(ApprovalEvent.approval_id).in_(list(by_id)),
                col(ApprovalEvent.kind).in_(["approved", "decided"]),
            )
        ):
            a, c = by_id[e.approval_id]
            if e.kind == "decided" and a.decision != "reject":
                continue
            if e.actor:
                out.append(Decided(c.code, e.actor, a.requested_at, e.at))
                seen.add(e.approval_id)
    for gid, (a, c) in by_id.items():
        if gid not in seen and a.approver and a.decided_at:
            out.append(Decided(c.code, a.approver, a.requested_at, a.decided_at))
    return out


def gate_report(
    *,
    session: Session,
    contract_code: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> GateReport:
    """Figures over the approver gates opened in [since, until) (open-ended when None)."""
    query = select(Approval, Contract).join(Contract, col(Contract.id) == col(Approval.contract_id))
    if contract_code:
        query = query.where(Contract.code == contract_code)
    if since is not None:
        query = query.where(col(Approval.requested_at) >= since)
    if until is not None:
        query = query.where(col(Approval.requested_at) < until)
    rows = [(a, c) for a, c in session.exec(query) if not a.gate.endswith("-revision")]
    decided = _answers(session, rows)
    gates: dict[str, int] = {}
    expiries: dict[str, int] = {}
    pending: dict[str, int] = {}
    escalations: dict[str, int] = {}
    counted = {"escalated": escalations, "refused": {}, "rotated": {}, "planted": {}}
    by_id = {a.id: c.code for a, c in rows}
    for a, c in rows:
        gates[c.code] = gates.get(c.code, 0) + 1
        if a.decision == "expired":
            expiries[c.code] = expiries.get(c.code, 0) + 1
        if a.decision is None:
            pending[c.code] = pending.get(c.code, 0) + 1
    if by_id:
        for e in session.exec(
            select(ApprovalEvent).where(
                col(ApprovalEvent.kind).in_(list(counted)),
                col(ApprovalEvent.approval_id).in_(list(by_id)),
            )
        ):
            code, tally = by_id[e.approval_id], counted[e.kind]
            tally[code] = tally.get(code, 0) + 1
    return GateReport(
        response_times(decided),
        gates,
        escalations,
        expiries,
        pending,
        refused=counted["refused"],
        replaced=counted["rotated"],
        planted=counted["planted"],
    )


# --- a revision gate's records ------------------------------------------------------------------


def revision_gate(approval_id: int) -> tuple[Approval, str | None]:
    """The revision gate's row and, once resubmitted, the revision the engineer recorded
    (JSON), so a re-run applies the same revision again."""
    with open_session() as db:
        gate = db.get(Approval, approval_id)
        assert gate is not None
        if gate.decision != "resubmit":
            return gate, None
        recorded = db.exec(
            select(ApprovalEvent)
            .where(ApprovalEvent.approval_id == approval_id, ApprovalEvent.kind == "revision")
            .order_by(col(ApprovalEvent.id).desc())
        ).first()
        assert recorded is not None
        return gate, recorded.detail


def record_revision(approval_id: int, engineer: str, detail: str, attempt_key: str) -> None:
    """Keep the engineer's revision (``detail``, JSON) on the revision gate."""
    with open_session() as db:
        log_event(
            session=db,
            approval_id=approval_id,
            kind="revision",
            actor=engineer[:200],
            detail=detail,
            attempt_key=attempt_key,
        )
