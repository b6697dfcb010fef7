"""Inspection runs, per-host results and findings."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from upkeep.models.base import created_field, json_field, ts_field


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class InspectionRun(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    contract_id: int = Field(foreign_key="contract.id", index=True)
    kind: str = Field(default="inspection", max_length=32)
    """inspection, recheck, sweep (ad hoc, `upkeep run sweep`) or demo."""
    flow_run_id: str | None = Field(default=None, max_length=64, index=True)
    requested_by: str | None = Field(default=None, max_length=200)
    window: str | None = Field(default=None, max_length=200)
    plan: dict[str, Any] = json_field()
    status: RunStatus = Field(default=RunStatus.RUNNING, sa_type=sa.String(16))
    report_path: str | None = Field(default=None, max_length=1024)
    started_at: datetime = created_field()
    finished_at: datetime | None = ts_field()


class HostResult(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("run_id", "host_id", name="uq_hostresult_run_host"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="inspectionrun.id", index=True)
    host_id: int = Field(foreign_key="host.id", index=True)
    reachable: bool
    facts: dict[str, Any] = json_field()
    """Parsed facts per check name."""
    measurements: list[dict[str, Any]] = json_field(list)
    """Every measured line (check, subject, value, threshold, severity, message)."""
    skipped: dict[str, str] = json_field()
    """Check name -> why it did not apply."""
    error: str | None = None
    error_kind: str | None = Field(default=None, max_length=32)
    started_at: datetime = created_field()
    finished_at: datetime | None = ts_field()


class FindingStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Finding(SQLModel, table=True):
    """One problem on one host through its life: found, seen again, resolved.

    Identity is (host, check, subject); a run that sees it again updates ``last_seen_*`` and
    the evidence, a run that evaluates the same check without it resolves it.
    """

    id: int | None = Field(default=None, primary_key=True)
    contract_id: int = Field(foreign_key="contract.id", index=True)
    host_id: int | None = Field(default=None, foreign_key="host.id", index=True)
    """None for findings about something that is not a host (a backup of a system)."""
    run_id: int = Field(foreign_key="inspectionrun.id", index=True)
    """The run that first found it."""
    check: str = Field(max_length=64)
    subject: str = Field(default="", max_length=255)
    severity: str = Field(max_length=16)
    message: str
    evidence: str = ""
    recommendation: str = ""
    status: FindingStatus = Field(default=FindingStatus.OPEN, sa_type=sa.String(16), index=True)
    first_seen_at: datetime = created_field()
    last_seen_at: datetime = created_field()
    last_seen_run_id: int = Field(foreign_key="inspectionrun.id")
    resolved_at: datetime | None = ts_field()
    resolved_by_run_id: int | None = Field(default=None, foreign_key="inspectionrun.id")


class RunClaim(SQLModel, table=True):
    """The one run of a process a contract may have under way (one plan, one gate at a time).

    A flow takes the claim at its start; a claim whose flow run has ended (or that Prefect no
    longer knows) is stale and the next run takes it over. The unique key settles two runs
    starting at once.
    """

    __table_args__ = (
        sa.UniqueConstraint("process", "contract_id", name="uq_runclaim_process_contract"),
    )

    id: int | None = Field(default=None, primary_key=True)
    process: str = Field(max_length=32)
    contract_id: int = Field(foreign_key="contract.id")
    flow_run_id: str = Field(max_length=64)
    claimed_at: datetime = created_field()
