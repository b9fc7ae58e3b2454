"""Every service's migrations build the schema its models declare, the outbox and inbox of
``messaging_tables`` included (parking columns, pruning indexes): a relay on a migrated database
can park and prune."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from fleet_core.db import Database

SERVICES = ["registry", "deployer", "monitor", "retrainer"]


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_build_the_schema_the_models_declare(service: str, tmp_path: Path) -> None:
    models = importlib.import_module(f"fleet_{service}.models")
    app = importlib.import_module(f"fleet_{service}.app")
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        await db.migrate(app.MIGRATIONS)
        async with db.engine.connect() as conn:
            diffs = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), models.Base.metadata)
            )
    finally:
        await db.dispose()

    # The whole schema, so a model change without its migration shows here too; the outbox's
    # parking columns and the inbox's pruning index are what 0002_outbox_parking adds.
    assert diffs == []
