"""The patch cycle's records: each plan as proposed and decided, and every step of applying it.

A :class:`PatchPlan` row keeps the exact plan (JSON) and its hash; when the customer approves,
the approval and the hash it approved are written on the row, and the apply task refuses any
plan whose hash differs. :class:`PatchStep` rows are the evidence of the rollout: who (upkeep
or a person), when, on which host, what was done and what came of it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from upkeep.models.base import created_field, json_field, ts_field


class PatchPlan(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    contract_id: int = Field(foreign_key="contract.id", index=True)
    run_id: int = Field(foreign_key="inspectionrun.id", index=True)
    flow_run_id: str | None = Field(default=None, max_length=64, index=True)
    kind: str = Field(default="preventive", max_length=16)
    revision: int = 1
    plan: dict[str, Any] = json_field()
    """``upkeep.domain.patching.PatchPlan`` as JSON, exactly as shown to the approvers."""
    plan_hash: str = Field(max_length=80)
    status: str = Field(default="proposed", max_length=16, index=True)
    """proposed, approved, rejected, cancelled, applied, failed, report-only."""
    approval_id: int | None = Field(default=None, foreign_key="approval.id")
    approved_hash: str | None = Field(default=None, max_length=80)
    approved_by: str | None = Field(default=None, max_length=400)
    approved_at: datetime | None = ts_field()
    finding_id: int | None = Field(default=None, foreign_key="finding.id")
    created_at: datetime = created_field()
    finished_at: datetime | None = ts_field()


class PatchStep(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    plan_id: int = Field(foreign_key="patchplan.id", index=True)
    host_id: int | None = Field(default=None, foreign_key="host.id")
    host: str = Field(default="", max_length=200)
    step: str = Field(max_length=32)
    """inventory-before, health-before, install, health-after, inventory-after, closure,
    rollback, refused."""
    actor: str = Field(default="upkeep", max_length=200)
    ok: bool = True
    summary: str = ""
    detail: dict[str, Any] = json_field()
    started_at: datetime = created_field()
    finished_at: datetime | None = ts_field()
