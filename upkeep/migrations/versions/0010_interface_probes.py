"""interface probes; the contract's systems and their smoke checks

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contract") as batch:
        batch.add_column(sa.Column("systems", sa.JSON(), nullable=False, server_default="[]"))
    op.create_table(
        "interfaceprobe",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contract_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("system", sa.String(length=200), nullable=False),
        sa.Column("check", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("probed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("reason", sa.String(length=2000), nullable=False),
        sa.ForeignKeyConstraint(["contract_id"], ["contract.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["inspectionrun.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_interfaceprobe_run_id", "interfaceprobe", ["run_id"])
    op.create_index(
        "ix_interfaceprobe_check_time",
        "interfaceprobe",
        ["contract_id", "system", "check", "probed_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_interfaceprobe_check_time", table_name="interfaceprobe")
    op.drop_index("ix_interfaceprobe_run_id", table_name="interfaceprobe")
    op.drop_table("interfaceprobe")
    with op.batch_alter_table("contract") as batch:
        batch.drop_column("systems")
