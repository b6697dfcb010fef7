"""Customers and their maintenance contracts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from upkeep.models.base import created_field, json_field


class CustomerBase(SQLModel):
    code: str = Field(index=True, unique=True, max_length=64)
    name: str = Field(max_length=200)


class CustomerCreate(CustomerBase):
    pass


class Customer(CustomerBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = created_field()
    updated_at: datetime = created_field()


class ContractBase(SQLModel):
    code: str = Field(index=True, unique=True, max_length=64)
    name: str = Field(max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    plan_requires_approval: bool = True
    active: bool = True


class ContractCreate(ContractBase):
    customer_id: int
    thresholds: dict[str, Any] = {}
    approvers: list[dict[str, str]] = []
    backup_approver: dict[str, str] | None = None
    report_recipients: list[str] = []
    cadences: dict[str, Any] = {}


class Contract(ContractBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    thresholds: dict[str, Any] = json_field()
    """Overrides of upkeep.domain.checks.base.Thresholds; the defaults fill the rest."""
    approvers: list[dict[str, str]] = json_field(list)
    """[{name, email}] who may approve this contract's gates."""
    backup_approver: dict[str, str] | None = Field(default=None, sa_type=sa.JSON)
    report_recipients: list[str] = json_field(list)
    cadences: dict[str, Any] = json_field()
    """Process -> cadence as written in the inventory (upkeep.domain.cadence parses it)."""
    blackouts: list[Any] = json_field(list)
    blackout_policy: str = Field(default="next_allowed_day", max_length=32)
    backup_sources: list[dict[str, Any]] = json_field(list)
    """What backups to verify and how (upkeep.inventory.BackupSourceSpec); secrets by name."""
    approval_policy: dict[str, Any] = json_field()
    """Defaults for every gate (tasks.gates.GatePolicy fields)."""
    gate_policies: dict[str, Any] = json_field()
    """Gate name -> overrides of approval_policy."""
    patching: dict[str, Any] = json_field()
    """How the patch cycle ends (upkeep.domain.contract.PatchPolicy): report only or apply."""
    systems: list[dict[str, Any]] = json_field(list)
    """The contract's systems and their smoke checks (upkeep.domain.interfaces.SystemSpec)."""
    created_at: datetime = created_field()
    updated_at: datetime = created_field()
