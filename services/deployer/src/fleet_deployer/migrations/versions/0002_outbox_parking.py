"""outbox parking and messaging retention

Revision ID: 0002_outbox_parking
Revises: 0001
Create Date: 2026-12-01

A row the broker keeps refusing is parked (``parked_at``, ``parked_reason``) so the rows behind
it are published; ``processed_at`` is indexed for pruning old inbox rows.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002_outbox_parking'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('parked_reason', sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f('ix_outbox_parked_at'), ['parked_at'], unique=False)

    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbox_processed_at'), ['processed_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbox_processed_at'))

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_parked_at'))
        batch_op.drop_column('parked_reason')
        batch_op.drop_column('parked_at')
