"""patch plans and their rollout steps; the contract's patching policy

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contract") as batch:
        batch.add_column(sa.Column("patching", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "patchplan",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contract_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("plan_hash", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("approval_id", sa.Integer(), nullable=True),
        sa.Column("approved_hash", sa.String(length=80), nullable=True),
        sa.Column("approved_by", sa.String(length=400), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finding_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["contract_id"], ["contract.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["inspectionrun.id"]),
        sa.ForeignKeyConstraint(["approval_id"], ["approval.id"]),
        sa.ForeignKeyConstraint(["finding_id"], ["finding.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_patchplan_contract_id", "patchplan", ["contract_id"])
    op.create_index("ix_patchplan_run_id", "patchplan", ["run_id"])
    op.create_index("ix_patchplan_flow_run_id", "patchplan", ["flow_run_id"])
    op.create_index("ix_patchplan_status", "patchplan", ["status"])
    op.create_table(
        "patchstep",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.String(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["plan_id"], ["patchplan.id"]),
        sa.ForeignKeyConstraint(["host_id"], ["host.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_patchstep_plan_id", "patchstep", ["plan_id"])


def downgrade() -> None:
    op.drop_index("ix_patchstep_plan_id", table_name="patchstep")
    op.drop_table("patchstep")
    for name in ("status", "flow_run_id", "run_id", "contract_id"):
        op.drop_index(f"ix_patchplan_{name}", table_name="patchplan")
    op.drop_table("patchplan")
    with op.batch_alter_table("contract") as batch:
        batch.drop_column("patching")
