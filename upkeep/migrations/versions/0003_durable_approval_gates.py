"""durable approval gates

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 22:52:56.895313
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('approvalcode',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('approval_id', sa.Integer(), nullable=False),
    sa.Column('person', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('code_hash', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['approval_id'], ['approval.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('approvalcode', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_approvalcode_approval_id'), ['approval_id'], unique=False)

    with op.batch_alter_table('approval', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gate_key', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('requested_by', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('policy', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.create_index(batch_op.f('ix_approval_gate_key'), ['gate_key'], unique=False)

    with op.batch_alter_table('approvalevent', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempt_key', sa.String(length=160), nullable=True))
        batch_op.create_index(batch_op.f('ix_approvalevent_attempt_key'), ['attempt_key'], unique=False)

    with op.batch_alter_table('contract', schema=None) as batch_op:
        batch_op.add_column(sa.Column('approval_policy', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('gate_policies', sa.JSON(), nullable=False, server_default='{}'))



def downgrade() -> None:
    with op.batch_alter_table('contract', schema=None) as batch_op:
        batch_op.drop_column('gate_policies')
        batch_op.drop_column('approval_policy')

    with op.batch_alter_table('approvalevent', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_approvalevent_attempt_key'))
        batch_op.drop_column('attempt_key')

    with op.batch_alter_table('approval', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_approval_gate_key'))
        batch_op.drop_column('policy')
        batch_op.drop_column('requested_by')
        batch_op.drop_column('gate_key')

    with op.batch_alter_table('approvalcode', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_approvalcode_approval_id'))

    op.drop_table('approvalcode')
