"""The registry in-process on SQLite, with no broker: events simply stay pending in the outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.registry import RegistryHarness, running_registry


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[RegistryHarness]:
    async with running_registry(tmp_path) as h:
        yield h
