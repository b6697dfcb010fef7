"""Releases as declared: what, when, where, with which test report, by whom.

One row per declared release. The test report file is copied next to the database
(``UPKEEP_DATA_DIR/releases/...``) with its SHA-256, so what the customer reviews is exactly
what was declared. Every step of the release flow is a :class:`ReleaseStep` row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
    finished_at: datetime | None = ts_field()


class ReleaseStep(SQLModel, table=True):
    """One step of a release: who (upkeep or a person), when, on which host, what came of it
    (pre-check, confirmation, decision, release, smoke, soak, rollback, rollback-clock, mail)."""

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id", index=True)
    host: str = Field(default="", max_length=200)
    step: str = Field(max_length=32)
    actor: str = Field(default="upkeep", max_length=200)
    ok: bool = True
    summary: str = ""
    detail: dict[str, Any] = json_field()
    started_at: datetime = created_field()
    finished_at: datetime | None = ts_field()
