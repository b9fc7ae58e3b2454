"""webhooks and their deliveries

Revision ID: 0006_webhooks
Revises: 0005_version_sha_index
Create Date: 2026-12-03
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')

revision: str = '0006_webhooks'
down_revision: str | None = '0005_version_sha_index'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'webhooks',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('team', sa.String(length=100), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('events', JSON, nullable=False),
        sa.Column('secret', sa.String(length=100), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_by', sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhooks')),
    )
    op.create_index(op.f('ix_webhooks_team'), 'webhooks', ['team'], unique=False)
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('webhook_id', sa.String(length=64), nullable=False),
        sa.Column('event_id', sa.String(length=100), nullable=False),
        sa.Column('topic', sa.String(length=200), nullable=False),
        sa.Column('payload', JSON, nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_status', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ['webhook_id'], ['webhooks.id'],
            name=op.f('fk_webhook_deliveries_webhook_id_webhooks'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
        sa.UniqueConstraint('webhook_id', 'event_id', name=op.f('uq_webhook_deliveries_webhook_id')),
    )
    op.create_index(
        'ix_webhook_deliveries_due', 'webhook_deliveries', ['state', 'next_attempt_at'], unique=False
    )
    op.create_index(
        op.f('ix_webhook_deliveries_webhook_id'), 'webhook_deliveries', ['webhook_id'], unique=False
    )


def downgrade() -> None:
    op.drop_table('webhook_deliveries')
    op.drop_index(op.f('ix_webhooks_team'), table_name='webhooks')
    op.drop_table('webhooks')
