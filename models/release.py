"""Releases as declared: what, when, where, with which test report, by whom.

One row per declared release. The test report file is copied next to the database
(``UPKEEP_DATA_DIR/releases/...``) with its SHA-256, so what the customer reviews is exactly
what was declared. The release flow (pre-release checks, review, notice, approval, canary,
verification, rollback) is still to come and will write its steps against this row.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from upkeep.models.base import created_field, json_field, ts_field


class Release(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    contract_id: int = Field(foreign_key="contract.id", index=True)
    system: str = Field(max_length=200)
    version: str = Field(max_length=100)
    changes: str
    window_at: datetime = ts_field(nullable=False)
    """The planned window's start (UTC; shown in the contract's timezone)."""
    hosts: list[str] = json_field(list)
    canary_hosts: list[str] = json_field(list)
    test_report_path: str = Field(max_length=2000)
    test_report_sha256: str = Field(max_length=64)
    test_report_name: str = Field(max_length=255)
    """The file's name as the engineer gave it."""
    status: str = Field(default="declared", max_length=16, index=True)
    declared_by: str = Field(max_length=200)
    declared_at: datetime = created_field()
    flow_run_id: str | None = Field(default=None, max_length=64)
