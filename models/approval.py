"""Approval gates: who was asked, who decided, when, and what they said."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from upkeep.models.base import created_field, json_field, ts_field


class Approval(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    flow_run_id: str = Field(max_length=64, index=True)
    """The run that waits (the approval sub-flow's own run): resume this one."""
    parent_flow_run_id: str | None = Field(default=None, max_length=64, index=True)
    """The process's run that asked (the inspection), when the gate is a sub-flow."""
    contract_id: int | None = Field(default=None, foreign_key="contract.id", index=True)
    gate: str = Field(default="approval", max_length=64)
    """Which gate of the flow: inspection-plan, release, ..."""
    gate_key: str | None = Field(default=None, max_length=128, index=True)
    """Unique within the flow run (gate and round): a re-run after resume finds its gate."""
    requested_by: str | None = Field(default=None, max_length=200)
    """Who started the run (may not approve it unless the contract allows)."""
    policy: dict[str, Any] = json_field()
    """The contract's policy for this gate when it opened (approvals needed, deadlines...)."""
    subject: str = Field(max_length=500)
    evidence: str = ""
    """The Markdown the approver was shown."""
    requested_at: datetime = created_field()
    decided_at: datetime | None = ts_field()
    approver: str | None = Field(default=None, max_length=200)
    decision: str | None = Field(default=None, max_length=16)
    """approve, reject, refused (an attempt by someone not allowed), cancelled."""
    comment: str | None = None


class ApprovalEvent(SQLModel, table=True):
    """One line of a gate's log: opened, notified, escalated, refused, decided, expired."""

    id: int | None = Field(default=None, primary_key=True)
    approval_id: int = Field(foreign_key="approval.id", index=True)
    at: datetime = created_field()
    kind: str = Field(max_length=16)
    attempt_key: str | None = Field(default=None, max_length=160, index=True)
    """The pause key of the answer this event judged: a re-run reuses the verdict."""
    actor: str | None = Field(default=None, max_length=200)
    """Who: the approver who answered, the engineer, or None for upkeep itself."""
    detail: str = ""


class ApprovalCode(SQLModel, table=True):
    """A one-time code sent to one person for one gate. Only its hash is kept."""

    id: int | None = Field(default=None, primary_key=True)
    approval_id: int = Field(foreign_key="approval.id", index=True)
    person: str = Field(max_length=200)
    email: str = Field(max_length=320)
    role: str = Field(default="approver", max_length=32)
    """approver, or backup approver (after escalation)."""
    code_hash: str = Field(max_length=200)
    created_at: datetime = created_field()
    used_at: datetime | None = ts_field()


class ApprovalLink(SQLModel, table=True):
    """A personal link to the approval page for one person and one gate.

    The link carries a random token; only its SHA-256 is kept (the token has 256 random bits,
    so a fast hash is enough and lets the page find the link by it). It works for one
    accepted decision and dies with its gate.
    """

    id: int | None = Field(default=None, primary_key=True)
    approval_id: int = Field(foreign_key="approval.id", index=True)
    person: str = Field(max_length=200)
    email: str = Field(max_length=320)
    role: str = Field(default="approver", max_length=32)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = created_field()
    used_at: datetime | None = ts_field()
    """When a decision through this link was sent (cleared again if it was refused)."""
    superseded_at: datetime | None = ts_field()
    """When a newer link to the same person for the same gate replaced this one."""
