"""indexes for listing models by when they were created or last changed

Revision ID: 0004_list_indexes
Revises: 0003
Create Date: 2026-12-02

``GET /v1/models?sort=updated`` (or ``created``) pages through a thousand models in SQL.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0004_list_indexes'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('models') as batch:
        batch.create_index(op.f('ix_models_created_at'), ['created_at'], unique=False)
        batch.create_index(op.f('ix_models_updated_at'), ['updated_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('models') as batch:
        batch.drop_index(op.f('ix_models_updated_at'))
        batch.drop_index(op.f('ix_models_created_at'))
