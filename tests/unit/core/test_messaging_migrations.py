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


async def test_a_services_relay_takes_its_outbox_settings_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The services build their relay without passing these: they come from FLEET_* like the rest."""
    from support.registry import running_registry

    monkeypatch.setenv("FLEET_OUTBOX_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("FLEET_OUTBOX_RETENTION_S", "3600")
    monkeypatch.setenv("FLEET_INBOX_RETENTION_S", "86400")
    async with running_registry(tmp_path) as registry:
        relay = registry.app.state.relay
        assert relay.settings.outbox_max_attempts == 2
        assert (relay.settings.outbox_retention_s, relay.settings.inbox_retention_s) == (3600, 86400)
        assert relay.inbox is not None and relay.inbox.name == "inbox"  # pruned with the outbox
        # parked_at and parked_reason exist on the migrated database: a count works.
        assert await relay.parked() == 0


def test_invalid_outbox_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from fleet_core.outbox import OutboxSettings

    monkeypatch.setenv("FLEET_OUTBOX_MAX_ATTEMPTS", "0")
    with pytest.raises(ValidationError, match="outbox_max_attempts"):
        OutboxSettings()
