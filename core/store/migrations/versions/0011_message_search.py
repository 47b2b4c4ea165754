"""message_search: full-text search over customers' messages (SQLite FTS5, PostgreSQL tsvector)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""
from alembic import op

from core.store.search import create_search, drop_search

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite: the FTS5 table and its triggers, filled with the messages already stored;
    # PostgreSQL: the GIN expression index (core.store.search says what each one does).
    create_search(op.get_bind())


def downgrade() -> None:
    drop_search(op.get_bind())
