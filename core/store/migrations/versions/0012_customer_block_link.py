"""customer_block_link: blocked customers and customers linked as one person

customer.person_id (/link), customer.blocked_at/by/reason (/block), customer.flood_since
and flood_count (the inbox's flood guard), ticket.merged_into (/merge).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('person_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('blocked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('blocked_by', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('blocked_reason', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('flood_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('flood_count', sa.Integer(), server_default='0',
                                      nullable=False))
        batch_op.create_foreign_key('fk_customer_person_id', 'customer', ['person_id'], ['id'])
        batch_op.create_index(batch_op.f('ix_customer_person_id'), ['person_id'], unique=False)
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('merged_into', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_ticket_merged_into', 'ticket', ['merged_into'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_constraint('fk_ticket_merged_into', type_='foreignkey')
        batch_op.drop_column('merged_into')
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_person_id'))
        batch_op.drop_constraint('fk_customer_person_id', type_='foreignkey')
        batch_op.drop_column('flood_count')
        batch_op.drop_column('flood_since')
        batch_op.drop_column('blocked_reason')
        batch_op.drop_column('blocked_by')
        batch_op.drop_column('blocked_at')
        batch_op.drop_column('person_id')
