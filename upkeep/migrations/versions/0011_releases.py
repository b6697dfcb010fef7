"""declared releases and their steps

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "release",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contract_id", sa.Integer(), nullable=False),
        sa.Column("system", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("changes", sa.String(), nullable=False),
        sa.Column("window_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hosts", sa.JSON(), nullable=False),
        sa.Column("canary_hosts", sa.JSON(), nullable=False),
        sa.Column("test_report_path", sa.String(length=2000), nullable=False),
        sa.Column("test_report_sha256", sa.String(length=64), nullable=False),
        sa.Column("test_report_name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("declared_by", sa.String(length=200), nullable=False),
        sa.Column("declared_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["contract_id"], ["contract.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_release_contract_id", "release", ["contract_id"])
    op.create_index("ix_release_status", "release", ["status"])
    op.create_table(
        "releasestep",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.String(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["release_id"], ["release.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_releasestep_release_id", "releasestep", ["release_id"])


def downgrade() -> None:
    op.drop_index("ix_releasestep_release_id", table_name="releasestep")
    op.drop_table("releasestep")
    op.drop_index("ix_release_status", table_name="release")
    op.drop_index("ix_release_contract_id", table_name="release")
    op.drop_table("release")
