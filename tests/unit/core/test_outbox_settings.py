"""The relay's FLEET_OUTBOX_* settings (attempts before parking, retention of sent outbox and old
inbox rows) reach a service's relay from the environment and are validated."""

from __future__ import annotations

from pathlib import Path

import pytest


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
