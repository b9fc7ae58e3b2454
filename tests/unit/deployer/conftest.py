"""The deployer in-process on SQLite with an in-memory serving engine and no broker: events simply
stay pending in the outbox. The registry is an in-memory double that knows every version the test
registers: the deployer confirms each ``model.registered`` with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.deployer import DeployerHarness, FakeServingControl, running_deployer
from support.registry_double import RegistryDouble, confirming


@pytest.fixture
def serving() -> FakeServingControl:
    return FakeServingControl()


@pytest.fixture
async def deployer(tmp_path: Path, serving: FakeServingControl) -> AsyncIterator[DeployerHarness]:
    async with running_deployer(tmp_path, serving=serving) as h:
        confirming(h)
        yield h


@pytest.fixture
def registry(deployer: DeployerHarness) -> RegistryDouble:
    assert isinstance(deployer.controller.registry, RegistryDouble)
    return deployer.controller.registry
