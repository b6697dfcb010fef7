"""Security advisories as synced, and what each host had installed when it was looked at."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from upkeep.models.base import created_field, json_field, ts_field


class AdvisoryRecord(SQLModel, table=True):
    """One OSV record as last synced (``upkeep advisories sync``): a sync replaces it only
    when the source has a newer ``modified``."""

    id: str = Field(primary_key=True, max_length=128)
    modified: datetime = ts_field(nullable=False, index=True)
    ecosystems: list[str] = json_field(list)
    """The ``affected`` entries' ecosystems (``Debian:12``...), to load one platform's records."""
    data: dict[str, Any] = json_field()
    """The record as read (OSV JSON)."""
    source: str = Field(default="", max_length=1000)
    """Where it was synced from: a path (``export.zip!member``) or a URL."""
    synced_at: datetime = created_field()


class HostInventory(SQLModel, table=True):
    """What one host had installed when upkeep looked, read over SSH with the fixed catalogue:
    a dated record, never updated; the next one is compared with it."""

    id: int | None = Field(default=None, primary_key=True)
    host_id: int = Field(foreign_key="host.id", index=True)
    contract_id: int = Field(foreign_key="contract.id", index=True)
    taken_at: datetime = created_field()
    flow_run_id: str | None = Field(default=None, max_length=64)
    ecosystem: str = Field(max_length=64)
    family: str = Field(max_length=8)
    os_pretty: str = Field(default="", max_length=200)
    running_kernel: str = Field(default="", max_length=200)
    installed_kernels: list[str] = json_field(list)
    reboot_required: bool | None = Field(default=None, sa_type=sa.Boolean)
    """True/False when the host says (reboot-required marker, needs-restarting -r); None when
    it has no way to tell."""
    reboot_detail: str = ""
    packages: list[dict[str, str]] = json_field(list)
    """Installed packages: name, version, arch, source, source_version."""
