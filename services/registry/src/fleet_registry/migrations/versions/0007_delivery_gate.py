"""delivery gates, version checks and reviews

Revision ID: 0007_delivery_gate
Revises: 0006_webhooks
Create Date: 2026-12-04
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')

revision: str = '0007_delivery_gate'
down_revision: str | None = '0006_webhooks'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'delivery_gates',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('gate', JSON, nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_by', sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ['model_id'], ['models.id'], name=op.f('fk_delivery_gates_model_id_models')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_gates')),
        sa.UniqueConstraint('model_id', name=op.f('uq_delivery_gates_model_id')),
    )
    op.create_table(
        'version_checks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('measured', JSON, nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('by', sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ['version_id'], ['model_versions.id'], name=op.f('fk_version_checks_version_id_model_versions')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_version_checks')),
        sa.UniqueConstraint('version_id', 'name', name=op.f('uq_version_checks_version_id')),
    )
    op.create_index(op.f('ix_version_checks_version_id'), 'version_checks', ['version_id'], unique=False)
    op.create_table(
        'version_reviews',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['version_id'], ['model_versions.id'], name=op.f('fk_version_reviews_version_id_model_versions')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_version_reviews')),
    )
    op.create_index(op.f('ix_version_reviews_version_id'), 'version_reviews', ['version_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_version_reviews_version_id'), table_name='version_reviews')
    op.drop_table('version_reviews')
    op.drop_index(op.f('ix_version_checks_version_id'), table_name='version_checks')
    op.drop_table('version_checks')
    op.drop_table('delivery_gates')
