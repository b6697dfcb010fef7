"""The interface monitor's record: every probe of every smoke check, with what it saw.

One row per probe (contract, system, check, when, passed or not, HTTP status, latency, the
reason in words); a command check has one row per host it ran on (``host``), its command line
in ``url`` and its run time as the latency. The daily status and, later, a release's effect
report compute their figures from these rows (``upkeep.domain.interfaces.figures``); nothing is
kept as a counter.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from upkeep.models.base import created_field


class InterfaceProbe(SQLModel, table=True):
    __table_args__ = (
        sa.Index("ix_interfaceprobe_check_time", "contract_id", "system", "check", "probed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    contract_id: int = Field(foreign_key="contract.id")
    run_id: int = Field(foreign_key="inspectionrun.id", index=True)
    system: str = Field(max_length=200)
    check: str = Field(max_length=64)
    host: str = Field(default="", max_length=200)
    """The host a command check ran on; empty for an HTTP probe (made from upkeep)."""
    url: str = Field(max_length=2000)
    """The URL probed, or the command line a command check ran."""
    probed_at: datetime = created_field()
    ok: bool
    status_code: int | None = None
    latency_ms: float | None = None
    reason: str = Field(max_length=2000)
