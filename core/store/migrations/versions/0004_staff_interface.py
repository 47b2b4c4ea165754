"""staff interface: where answers go (ticket.reply_target), ticket topics, cards by message id

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reply_target', sa.JSON(), nullable=True))
        # The forum topic of a ticket, looked up when staff write in it.
        batch_op.add_column(sa.Column('staff_topic', sa.Integer(), nullable=True))
        batch_op.create_index('ix_ticket_staff_topic', ['staff_topic'], unique=False)
        batch_op.drop_column('staff_ref')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_external', ['channel', 'external_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_external')
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('staff_ref', sa.JSON(), nullable=True))
        batch_op.drop_index('ix_ticket_staff_topic')
        batch_op.drop_column('staff_topic')
        batch_op.drop_column('reply_target')
