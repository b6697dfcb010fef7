"""Hosts under contract. Credentials are references only, never secrets."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from upkeep.models.base import created_field, json_field


class HostBase(SQLModel):
    name: str = Field(max_length=200)
    address: str = Field(max_length=255)
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = Field(default=None, max_length=64)
    """None: the UPKEEP_SSH_USER default."""
    role: str | None = Field(default=None, max_length=64)
    system: str | None = Field(default=None, max_length=200)
    key_file: str | None = Field(default=None, max_length=1024)
    """Path of a private key file on the machine that runs the flow."""
    key_secret: str | None = Field(default=None, max_length=200)
    """Name of a Prefect Secret block that holds the private key."""
    active: bool = True


class HostCreate(HostBase):
    contract_id: int
    tags: list[str] = []


class Host(HostBase, table=True):
    __table_args__ = (sa.UniqueConstraint("contract_id", "name", name="uq_host_contract_name"),)

    id: int | None = Field(default=None, primary_key=True)
    contract_id: int = Field(foreign_key="contract.id", index=True)
    tags: list[str] = json_field(list)
    created_at: datetime = created_field()
    updated_at: datetime = created_field()
