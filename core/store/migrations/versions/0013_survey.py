"""survey: satisfaction surveys and their answers

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'survey',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('cycle', sa.Integer(), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('agent', sa.String(length=128), nullable=True),
        sa.Column('language', sa.String(length=8), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('score', sa.Integer(), nullable=True),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('commented_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id']),
        sa.ForeignKeyConstraint(['customer_id'], ['customer.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('ticket_id', 'cycle', name='uq_survey_cycle'),
    )
    op.create_index('ix_survey_ticket_id', 'survey', ['ticket_id'])
    op.create_index('ix_survey_answered_at', 'survey', ['answered_at'])
    op.create_index('ix_survey_customer', 'survey', ['customer_id', 'state'])


def downgrade() -> None:
    op.drop_index('ix_survey_customer', table_name='survey')
    op.drop_index('ix_survey_answered_at', table_name='survey')
    op.drop_index('ix_survey_ticket_id', table_name='survey')
    op.drop_table('survey')
