"""quarantine (payloads that could not be read or stored) and heartbeat (health writes)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'quarantine',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('external_id', sa.String(length=128), nullable=True),
        sa.Column('payload', sa.String(), nullable=False),
        sa.Column('error', sa.String(), nullable=False),
        sa.Column('quarantined_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('channel', 'external_id', name='uq_quarantine_external'),
    )
    op.create_index('ix_quarantine_channel', 'quarantine', ['channel'])
    op.create_index('ix_quarantine_state', 'quarantine', ['state'])
    op.create_table(
        'heartbeat',
        sa.Column('process', sa.String(length=128), nullable=False),
        sa.Column('beat_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('process'),
    )


def downgrade() -> None:
    op.drop_table('heartbeat')
    op.drop_index('ix_quarantine_state', table_name='quarantine')
    op.drop_index('ix_quarantine_channel', table_name='quarantine')
    op.drop_table('quarantine')
