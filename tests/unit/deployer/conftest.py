"""The deployer in-process on SQLite with an in-memory serving engine and no broker: events simply
stay pending in the outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.deployer import DeployerHarness, FakeServingControl, running_deployer


@pytest.fixture
def serving() -> FakeServingControl:
    return FakeServingControl()


@pytest.fixture
async def deployer(tmp_path: Path, serving: FakeServingControl) -> AsyncIterator[DeployerHarness]:
    async with running_deployer(tmp_path, serving=serving) as h:
        yield h
