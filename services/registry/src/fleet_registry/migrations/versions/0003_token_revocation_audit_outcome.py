"""token revocation; audit outcome

Revision ID: 0003
Revises: 0002_outbox_parking
Create Date: 2026-12-01 16:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002_outbox_parking'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('issued_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('revoked_by', sa.String(length=200), nullable=True))
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('outcome', sa.String(length=20), server_default='ok', nullable=False))
        batch_op.add_column(sa.Column('service', sa.String(length=40), server_default='registry', nullable=False))
        batch_op.create_index(batch_op.f('ix_audit_log_outcome'), ['outcome'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_outcome'))
        batch_op.drop_column('service')
        batch_op.drop_column('outcome')
    with op.batch_alter_table('issued_tokens', schema=None) as batch_op:
        batch_op.drop_column('revoked_by')
        batch_op.drop_column('revoked_at')
