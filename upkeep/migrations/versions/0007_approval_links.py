"""approval links: personal links to the approval page, stored as hashes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approvallink",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("approval_id", sa.Integer(), nullable=False),
        sa.Column("person", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["approval_id"], ["approval.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_approvallink_approval_id", "approvallink", ["approval_id"])
    op.create_index("ix_approvallink_token_hash", "approvallink", ["token_hash"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_approvallink_token_hash", table_name="approvallink")
    op.drop_index("ix_approvallink_approval_id", table_name="approvallink")
    op.drop_table("approvallink")
