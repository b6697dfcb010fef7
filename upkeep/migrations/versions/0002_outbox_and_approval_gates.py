"""outbox and approval gates

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 22:16:45.922392
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outboxmessage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=500), nullable=False),
    sa.Column('recipients', sa.JSON(), nullable=False),
    sa.Column('text_body', sa.String(), nullable=False),
    sa.Column('html_body', sa.String(), nullable=False),
    sa.Column('attachments', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['contract.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outboxmessage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outboxmessage_contract_id'), ['contract_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outboxmessage_status'), ['status'], unique=False)

    op.create_table('approvalevent',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('approval_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=True),
    sa.Column('detail', sa.String(), nullable=False),
    sa.ForeignKeyConstraint(['approval_id'], ['approval.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('approvalevent', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_approvalevent_approval_id'), ['approval_id'], unique=False)

    with op.batch_alter_table('approval', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gate', sa.String(length=64), nullable=False, server_default='approval'))
        batch_op.add_column(sa.Column('evidence', sa.String(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('parent_flow_run_id', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_approval_parent_flow_run_id'), ['parent_flow_run_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('approval', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_approval_parent_flow_run_id'))
        batch_op.drop_column('parent_flow_run_id')
        batch_op.drop_column('evidence')
        batch_op.drop_column('gate')

    with op.batch_alter_table('outboxmessage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outboxmessage_status'))
        batch_op.drop_index(batch_op.f('ix_outboxmessage_contract_id'))

    op.drop_table('outboxmessage')
    with op.batch_alter_table('approvalevent', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_approvalevent_approval_id'))
    op.drop_table('approvalevent')
