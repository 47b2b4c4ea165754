"""the sweep in constant time: waiting tickets with an escalation planned

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30

The sweep asks for the earliest planned escalation of a waiting ticket and for the
tickets due now. Through ``ix_ticket_sweep`` (status, next_escalation_at) PostgreSQL read
every waiting ticket for the minimum, most of them with no escalation left (60 times the
time for 100 times the tickets). ``ix_ticket_next_due`` holds only the waiting tickets
that have one; its condition is written as the queries write it (core.store.tables:
TICKET_DUE), since SQLite uses a partial index only for a query that repeats it.
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

DUE = "status IN ('open', 'snoozed') AND next_escalation_at IS NOT NULL"


def upgrade() -> None:
    op.create_index('ix_ticket_next_due', 'ticket', ['next_escalation_at'],
                    sqlite_where=sa.text(DUE), postgresql_where=sa.text(DUE))


def downgrade() -> None:
    op.drop_index('ix_ticket_next_due', table_name='ticket')
