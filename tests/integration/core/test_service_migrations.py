"""Every service's migrations build, on SQLite and PostgreSQL, the schema its models declare (the
outbox's parking columns and the inbox's pruning index included)."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from fleet_core.db import Database

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("service", ["registry", "deployer", "monitor", "retrainer"])
async def test_migrations_build_the_schema_the_models_declare(service: str, db_url: str) -> None:
    models = importlib.import_module(f"fleet_{service}.models")
    app = importlib.import_module(f"fleet_{service}.app")
    db = Database(db_url)
    try:
        await db.migrate(app.MIGRATIONS)
        async with db.engine.connect() as conn:
            diffs = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), models.Base.metadata)
            )
    finally:
        await db.dispose()
    assert diffs == []
