"""advisories and host inventories: synced OSV records, dated package inventories

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 18:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "advisoryrecord",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("modified", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ecosystems", sa.JSON(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=1000), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_advisoryrecord_modified", "advisoryrecord", ["modified"])
    op.create_table(
        "hostinventory",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("contract_id", sa.Integer(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("ecosystem", sa.String(length=64), nullable=False),
        sa.Column("family", sa.String(length=8), nullable=False),
        sa.Column("os_pretty", sa.String(length=200), nullable=False),
        sa.Column("running_kernel", sa.String(length=200), nullable=False),
        sa.Column("installed_kernels", sa.JSON(), nullable=False),
        sa.Column("reboot_required", sa.Boolean(), nullable=True),
        sa.Column("reboot_detail", sa.String(), nullable=False),
        sa.Column("packages", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["contract_id"], ["contract.id"]),
        sa.ForeignKeyConstraint(["host_id"], ["host.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_hostinventory_host_id", "hostinventory", ["host_id"])
    op.create_index("ix_hostinventory_contract_id", "hostinventory", ["contract_id"])


def downgrade() -> None:
    op.drop_index("ix_hostinventory_contract_id", table_name="hostinventory")
    op.drop_index("ix_hostinventory_host_id", table_name="hostinventory")
    op.drop_table("hostinventory")
    op.drop_index("ix_advisoryrecord_modified", table_name="advisoryrecord")
    op.drop_table("advisoryrecord")
