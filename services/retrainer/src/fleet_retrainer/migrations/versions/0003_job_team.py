"""jobs record the team of their model

Revision ID: 0003
Revises: 0002_outbox_parking
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002_outbox_parking'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: jobs from before this revision have no known team and are shown only to principals
    # who see every team (the access checks fail closed on a missing team).
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('team', sa.String(length=100), nullable=True))
        batch.create_index(op.f('ix_jobs_team'), ['team'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_index(op.f('ix_jobs_team'))
        batch.drop_column('team')
