"""The records behind the personal approval links: make a link, read what its page shows,
claim it for one decision, and mint the one-time code the decision is sent with.

A link is made with each approval code (:func:`~upkeep.tasks.approval_records.send_codes`) and
sent in the same e-mail; only its hash is stored. A decision posted through the approval page
is sent to the flow like any other answer: with the person's name and a one-time code, minted
here for that one answer (its hash stored like every code), so the flow judges it by exactly
the same rules (:func:`~upkeep.domain.approvals.verdict`). The token itself never leaves this
database as anything but its hash: not in the run's input, not in logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from upkeep.db import open_session
from upkeep.domain.approvals import approved_by
from upkeep.domain.codes import hash_code, new_code
from upkeep.domain.contract import ContractView, GatePolicy
from upkeep.domain.links import PENDING_FOR, LinkFacts, token_hash, well_formed
from upkeep.models import (
    Approval,
    ApprovalCode,
    ApprovalEvent,
    ApprovalLink,
    Contract,
    Customer,
    utcnow,
)
from upkeep.tasks.gates import log_event

LINK_PATH = "/a/"


def link_url(base: str, token: str) -> str:
    return base.rstrip("/") + LINK_PATH + token


def add_link(db: Session, approval_id: int, person: str, email: str, role: str, token: str) -> None:
    """Keep the hash of ``token`` (from :func:`~upkeep.domain.links.new_token`) as a link of
    ``person`` for this gate. Stored before the mail goes out, so the link works the moment
    it arrives; :func:`drop_link` if the mail fails, :func:`supersede_links` once it went."""
    db.add(
        ApprovalLink(
            approval_id=approval_id,
            person=person,
            email=email,
            role=role,
            token_hash=token_hash(token),
        )
    )


def drop_link(db: Session, token: str) -> None:
    link = db.exec(select(ApprovalLink).where(ApprovalLink.token_hash == token_hash(token))).first()
    if link is not None:
        db.delete(link)


def supersede_links(db: Session, approval_id: int, person: str, keep: str) -> None:
    """Every other live link of ``person`` for this gate stops working (a newer mail went)."""
    now = utcnow()
    for old in db.exec(
        select(ApprovalLink).where(
            ApprovalLink.approval_id == approval_id,
            ApprovalLink.person == person,
            col(ApprovalLink.superseded_at).is_(None),
            ApprovalLink.token_hash != token_hash(keep),
        )
    ):
        old.superseded_at = now
        db.add(old)


@dataclass(frozen=True)
class Decided:
    who: str
    at: datetime


@dataclass(frozen=True)
class LinkPage:
    """Everything the approval page shows for one link."""

    link_id: int
    approval_id: int
    flow_run_id: str
    token_digest: str
    person: str
    role: str
    gate: str
    subject: str
    evidence: str
    contract_code: str
    contract_name: str
    customer_name: str
    timezone: str
    requested_by: str | None
    requested_at: datetime
    required: int
    approvals: list[Decided]
    facts: LinkFacts
    refused_after_use: str | None = None
    """Why the flow refused the decision last sent through this link (the link works again
    once :func:`release` is called)."""


def _newer_round(db: Session, gate: Approval) -> bool:
    later = db.exec(
        select(Approval.id).where(
            Approval.flow_run_id == gate.flow_run_id,
            Approval.gate == gate.gate,
            col(Approval.id) > gate.id,
        )
    ).first()
    return later is not None


def read_link(token: str) -> LinkPage | None:
    """The page's facts for ``token``, or None if no link has that token."""
    if not well_formed(token):
        return None
    return read_link_by_digest(token_hash(token))


def read_link_by_digest(digest: str) -> LinkPage | None:
    """The page's facts for the link stored under ``digest`` (re-read after a decision)."""
    with open_session() as db:
        link = db.exec(select(ApprovalLink).where(ApprovalLink.token_hash == digest)).first()
        if link is None or link.id is None:
            return None
        gate = db.get(Approval, link.approval_id)
        if gate is None or gate.id is None:
            return None
        contract = db.get(Contract, gate.contract_id) if gate.contract_id is not None else None
        customer = db.get(Customer, contract.customer_id) if contract is not None else None
        view = ContractView.of(contract) if contract is not None else None
        events = list(
            db.exec(
                select(ApprovalEvent)
                .where(ApprovalEvent.approval_id == gate.id)
                .order_by(col(ApprovalEvent.id))
            )
        )
        policy = GatePolicy.model_validate(gate.policy or {})
        deadline = gate.requested_at + timedelta(hours=policy.expire_after_hours)
        return LinkPage(
            link_id=link.id,
            approval_id=gate.id,
            flow_run_id=gate.flow_run_id,
            token_digest=digest,
            person=link.person,
            role=link.role,
            gate=gate.gate,
            subject=gate.subject,
            evidence=gate.evidence,
            contract_code=view.code if view else "",
            contract_name=contract.name if contract else "",
            customer_name=customer.name if customer else "",
            timezone=view.timezone if view else "UTC",
            requested_by=gate.requested_by,
            requested_at=gate.requested_at,
            required=policy.required_approvals,
            approvals=[Decided(e.actor, e.at) for e in events if e.kind == "approved" and e.actor],
            facts=LinkFacts(
                person=link.person,
                gate_decision=gate.decision,
                gate_decided_by=gate.approver,
                gate_decided_at=gate.decided_at,
                gate_comment=gate.comment,
                deadline=deadline,
                approved_by=approved_by(events),
                used_at=link.used_at,
                superseded_at=link.superseded_at,
                newer_round=_newer_round(db, gate),
            ),
            refused_after_use=_refused_after(events, link),
        )


def _refused_after(events: list[ApprovalEvent], link: ApprovalLink) -> str | None:
    if link.used_at is None:
        return None
    mine = [e for e in events if e.actor == link.person and e.at >= link.used_at]
    if mine and mine[-1].kind == "refused":
        return mine[-1].detail
    return None


def claim(page: LinkPage, decision: str, client: str) -> bool:
    """Mark the link used for one decision and record that the page sends it (who, what,
    from which address); False if it was claimed already (atomic: two posts of the same link
    at once send one decision). A claim older than :data:`~upkeep.domain.links.PENDING_FOR`
    whose decision never reached the flow may be taken again."""
    now = utcnow()
    with open_session() as db:
        done: sa.CursorResult[Any] = db.execute(  # type: ignore[assignment]
            sa.update(ApprovalLink)
            .where(
                col(ApprovalLink.id) == page.link_id,
                sa.or_(
                    col(ApprovalLink.used_at).is_(None),
                    col(ApprovalLink.used_at) < now - PENDING_FOR,
                ),
            )
            .values(used_at=now)
        )
        if not done.rowcount:
            return False
        log_event(
            session=db,
            approval_id=page.approval_id,
            kind="page_sent",
            actor=page.person,
            detail=f"{decision} sent from the approval page (client {client})",
        )
        return True


def release(link_id: int, page: LinkPage | None = None, reason: str = "") -> None:
    """The decision sent through the link was refused or never reached the flow: the link
    works again. With ``page`` and ``reason``, the gate's log says why it was not sent."""
    with open_session() as db:
        db.execute(
            sa.update(ApprovalLink).where(col(ApprovalLink.id) == link_id).values(used_at=None)
        )
        if page is not None and reason:
            log_event(
                session=db,
                approval_id=page.approval_id,
                kind="page_failed",
                actor=page.person,
                detail=f"not sent to the run: {reason}"[:2000],
            )


def mint_code(page: LinkPage) -> tuple[str, int]:
    """A one-time code for the one answer sent through the link: (code, its row id)."""
    code = new_code()
    with open_session() as db:
        row = ApprovalCode(
            approval_id=page.approval_id,
            person=page.person,
            email=f"link:{page.link_id}",
            role=page.role,
            code_hash=hash_code(code),
        )
        db.add(row)
        db.flush()
        assert row.id is not None
        return code, row.id


def drop_code(code_id: int) -> None:
    """Remove a minted code whose answer was refused or never sent (unused codes only)."""
    with open_session() as db:
        row = db.get(ApprovalCode, code_id)
        if row is not None and row.used_at is None:
            db.delete(row)


def links_of(db: Session, approval_id: int) -> list[ApprovalLink]:
    """The gate's links, oldest first (their hashes only: nothing here opens the page)."""
    return list(
        db.exec(
            select(ApprovalLink)
            .where(ApprovalLink.approval_id == approval_id)
            .order_by(col(ApprovalLink.id))
        )
    )
