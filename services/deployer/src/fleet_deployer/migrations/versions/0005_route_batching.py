"""a model's batch settings live on its route table

Revision ID: 0005_route_batching
Revises: 0004_list_indexes
Create Date: 2026-12-02

``PUT /v1/routes/{model}/batching`` sets how gateways batch the model's requests; the settings
travel with the route table (snapshot and ``rollout.updated``). NULL: the gateway's defaults.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0005_route_batching'
down_revision: str | None = '0004_list_indexes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('route_tables') as batch:
        batch.add_column(sa.Column(
                'batching',
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
                nullable=True,
            ))


def downgrade() -> None:
    with op.batch_alter_table('route_tables') as batch:
        batch.drop_column('batching')
