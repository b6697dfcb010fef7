"""outbox messages that wait for their time (a release notice before its window)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 10:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outboxmessage") as batch:
        batch.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outboxmessage") as batch:
        batch.drop_column("not_before")
