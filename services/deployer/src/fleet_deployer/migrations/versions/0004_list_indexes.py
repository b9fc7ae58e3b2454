"""an index for listing deployments by when they last changed

Revision ID: 0004_list_indexes
Revises: 0002_outbox_parking
Create Date: 2026-12-02

``GET /v1/deployments?sort=updated`` pages through a fleet of a thousand models in SQL.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0004_list_indexes'
down_revision: str | None = '0002_outbox_parking'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('deployments') as batch:
        batch.create_index(op.f('ix_deployments_updated_at'), ['updated_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('deployments') as batch:
        batch.drop_index(op.f('ix_deployments_updated_at'))
