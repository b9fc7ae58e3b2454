"""an index on model_versions (model_id, sha256)

Revision ID: 0005_version_sha_index
Revises: 0004_list_indexes
Create Date: 2026-12-02

Registering bytes a model already holds returns the existing version (ADR 0024); this index makes
that look-up one probe. It is not unique: an explicit version number may register the same bytes
again.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0005_version_sha_index'
down_revision: str | None = '0004_list_indexes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.create_index('ix_model_versions_model_sha256', ['model_id', 'sha256'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_model_versions_model_sha256')
