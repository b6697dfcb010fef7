"""Backup versions: every backup upkeep verified (or failed to), and where it is archived."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from upkeep.models.base import created_field, json_field, ts_field
from upkeep.models.enums import Fault, Outcome, StrEnumColumn


class BackupVersion(SQLModel, table=True):
    """One backup of one system, as upkeep found and tested it.

    ``outcome`` is good (restored and every check passed) or bad (with the fault: the backup
    itself, or the system that makes it). Only good versions count for retention.
    """

    id: int | None = Field(default=None, primary_key=True)
    contract_id: int = Field(foreign_key="contract.id", index=True)
    system: str = Field(max_length=200, index=True)
    kind: str = Field(max_length=16)
    security_level: str = Field(max_length=32)
    importance: str = Field(max_length=32)
    backup: str = Field(max_length=1024)
    """The backup file, or the restic snapshot id."""
    taken_at: datetime | None = ts_field()
    taken_by_upkeep: bool = False
    """Whether this run took it because the latest one was too old or missing."""
    size_bytes: int | None = None
    checksum: str | None = Field(default=None, max_length=128)
    verified_at: datetime = created_field()
    outcome: Outcome = Field(sa_type=StrEnumColumn(Outcome, 8), index=True)
    fault: Fault | None = Field(default=None, sa_type=StrEnumColumn(Fault, 16))
    reason: str | None = Field(default=None, max_length=64)
    evidence: str = ""
    checks: list[dict[str, object]] = json_field(list)
    duration_s: float | None = None
    drill: bool = False
    archive_path: str | None = Field(default=None, max_length=1024)
    pruned_at: datetime | None = ts_field()
    flow_run_id: str | None = Field(default=None, max_length=64)
    run_kind: str = Field(default="verification", sa_type=sa.String(16))
