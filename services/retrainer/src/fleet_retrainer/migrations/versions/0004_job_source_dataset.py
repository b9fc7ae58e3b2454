"""jobs record the dataset version a dataset trigger named

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: a job of any other trigger (and every job from before) trains on its champion's
    # own training dataset version.
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('source_dataset', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('source_dataset_version', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('source_dataset_version')
        batch.drop_column('source_dataset')
