"""Mail waiting to be delivered. Nothing is lost when the mail server is down."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from upkeep.models.base import created_field, json_field, ts_field


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"


class OutboxMessage(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    contract_id: int | None = Field(default=None, foreign_key="contract.id", index=True)
    kind: str = Field(max_length=64)
    """What it is: inspection_report, approval_request, ..."""
    subject: str = Field(max_length=500)
    recipients: list[str] = json_field(list)
    text_body: str
    html_body: str
    attachments: list[str] = json_field(list)
    """Paths of files on the machine that sends it (reports are kept under the report dir)."""
    status: OutboxStatus = Field(default=OutboxStatus.PENDING, sa_type=sa.String(16), index=True)
    attempts: int = 0
    last_attempt_at: datetime | None = ts_field()
    last_error: str | None = None
    sent_at: datetime | None = ts_field()
    not_before: datetime | None = ts_field()
    """Not delivered before this time (a release notice N hours before its window); None: at
    once."""
    created_at: datetime = created_field()
