"""contract blackouts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 23:19:15.146792
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contract', schema=None) as batch_op:
        batch_op.add_column(sa.Column('blackouts', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('blackout_policy', sa.String(length=32), nullable=False, server_default='next_allowed_day'))



def downgrade() -> None:
    with op.batch_alter_table('contract', schema=None) as batch_op:
        batch_op.drop_column('blackout_policy')
        batch_op.drop_column('blackouts')

