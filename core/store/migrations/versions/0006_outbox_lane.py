"""outbox.lane: customers' rows first, then new cards and alerts, then staff chatter

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lane', sa.Integer(), nullable=False,
                                      server_default='1'))
    # Rows still queued keep their place: customers first, card edits with the chatter.
    op.execute("UPDATE outbox SET lane = 0 WHERE kind IN ('ack', 'reply')")
    op.execute("UPDATE outbox SET lane = 2 WHERE kind = 'card_edit'")


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('lane')
