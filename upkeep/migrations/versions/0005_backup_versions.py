"""backup versions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 23:32:43.538611
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('backupversion',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('system', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('security_level', sa.String(length=32), nullable=False),
    sa.Column('importance', sa.String(length=32), nullable=False),
    sa.Column('backup', sa.String(length=1024), nullable=False),
    sa.Column('taken_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('taken_by_upkeep', sa.Boolean(), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=True),
    sa.Column('checksum', sa.String(length=128), nullable=True),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=8), nullable=False),
    sa.Column('fault', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('evidence', sa.String(), nullable=False),
    sa.Column('checks', sa.JSON(), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('drill', sa.Boolean(), nullable=False),
    sa.Column('archive_path', sa.String(length=1024), nullable=True),
    sa.Column('pruned_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('flow_run_id', sa.String(length=64), nullable=True),
    sa.Column('run_kind', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['contract.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('backupversion', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_backupversion_contract_id'), ['contract_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_backupversion_outcome'), ['outcome'], unique=False)
        batch_op.create_index(batch_op.f('ix_backupversion_system'), ['system'], unique=False)

    with op.batch_alter_table('contract', schema=None) as batch_op:
        batch_op.add_column(sa.Column('backup_sources', sa.JSON(), nullable=False, server_default='[]'))

    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.alter_column('host_id',
               existing_type=sa.INTEGER(),
               nullable=True)



def downgrade() -> None:
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.alter_column('host_id',
               existing_type=sa.INTEGER(),
               nullable=False)

    with op.batch_alter_table('contract', schema=None) as batch_op:
        batch_op.drop_column('backup_sources')

    with op.batch_alter_table('backupversion', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_backupversion_system'))
        batch_op.drop_index(batch_op.f('ix_backupversion_outcome'))
        batch_op.drop_index(batch_op.f('ix_backupversion_contract_id'))

    op.drop_table('backupversion')
