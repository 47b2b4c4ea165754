"""metrics in constant time: tickets by opening time, and the outbox rows still waiting

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03

/metrics reads "today" through ``ix_ticket_opened`` (only the day's tickets) and the
outbox depth and oldest due row through ``ix_outbox_waiting``, a partial index that holds
only the rows waiting to be sent (pending or retry), with their state so that SQLite
reads the index alone: both touch what they count, not the history (core/app/health.py). The partial index's condition is written exactly as the
query writes it (``state IN ('pending', 'retry')``): SQLite uses a partial index only
for a query whose WHERE repeats its condition term for term.
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

WAITING = "state IN ('pending', 'retry')"


def upgrade() -> None:
    op.create_index('ix_ticket_opened', 'ticket', ['opened_at'])
    op.create_index('ix_outbox_waiting', 'outbox', ['channel', 'state', 'next_attempt_at'],
                    sqlite_where=sa.text(WAITING), postgresql_where=sa.text(WAITING))


def downgrade() -> None:
    op.drop_index('ix_outbox_waiting', table_name='outbox')
    op.drop_index('ix_ticket_opened', table_name='ticket')
