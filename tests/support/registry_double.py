"""An in-memory registry for the deployer's tests: what the deployer confirms every
``model.registered`` with (events are notifications, the registry is the truth)."""

from __future__ import annotations

from typing import Any

from fleet_core.errors import NotFound
from fleet_core.events import ModelRegistered
from fleet_core.serving import ModelSpec
from fleet_deployer.entities import KnownVersion
from support.deployer import DeployerHarness, registered


class RegistryDouble:
    """The registry's record of versions, as the deployer's registry client returns it."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, int], KnownVersion] = {}
        self.states: dict[tuple[str, int], str] = {}
        """(model, version) -> the delivery state the registry holds for a gated version."""
        self.lookups = 0

    def add(self, data: ModelRegistered) -> None:
        self.versions[(data.model, data.version)] = KnownVersion(
            spec=ModelSpec.from_registered(data),
            quota=data.quota,
            deploy_policy=data.deploy_policy,
            source="registry",
            registered_by=data.registered_by,
        )

    async def version(self, model: str, version: int) -> KnownVersion:
        self.lookups += 1
        found = self.versions.get((model, version))
        if found is None:
            raise NotFound(f"model '{model}' version {version} does not exist", field="version")
        return found

    async def delivery(self, model: str, version: int) -> dict[str, Any]:
        known = await self.version(model, version)
        state = self.states.get((model, version)) if known.deploy_policy == "gated" else None
        return {"state": state, "deploy_policy": known.deploy_policy, "reason": f"state {state}"}

    async def latest_version(self, model: str) -> int:
        numbers = [v for m, v in self.versions if m == model]
        if not numbers:
            raise NotFound(f"model '{model}' does not exist", field="model")
        return max(numbers)


def confirming(h: DeployerHarness) -> RegistryDouble:
    """Give ``h`` a registry double; ``h.register`` then records the version there first, as the
    real registry does before it publishes ``model.registered``."""
    registry = RegistryDouble()
    h.controller.registry = registry
    announce = h.register

    async def register(model: str, version: int, **extra: Any) -> None:
        registry.add(registered(model, version, **extra))
        await announce(model, version, **extra)

    h.register = register  # type: ignore[method-assign]
    return registry
