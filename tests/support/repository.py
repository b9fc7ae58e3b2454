"""The gateway in front of a real deployer app (SQLite, an in-memory Ray Serve, a registry double)
that it reaches over loopback HTTP, as the model repository extension does in production."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet_core.serving import RoutesSnapshot
from support.deployer import DeployerHarness, FakeServingControl, running_deployer
from support.gateway import GatewayHarness, running_gateway
from support.http import serving
from support.registry_double import RegistryDouble, confirming


@dataclass
class RepositoryStack:
    gateway: GatewayHarness
    deployer: DeployerHarness
    registry: RegistryDouble
    ray: FakeServingControl


@asynccontextmanager
async def gateway_with_deployer(
    tmp: Path, *, routes: RoutesSnapshot | None = None, **overrides: Any
) -> AsyncIterator[RepositoryStack]:
    """``routes`` None: the gateway bootstraps its route book from the deployer, as in production."""
    ray = FakeServingControl()
    async with running_deployer(tmp, serving=ray) as deployer:
        registry = confirming(deployer)
        async with (
            serving(deployer.app, lifespan="off") as url,
            running_gateway(routes, deployer_url=url, **overrides) as gateway,
        ):
            deadline = asyncio.get_running_loop().time() + 30
            while (await gateway.client.get("/v2/health/ready")).status_code != 200:
                assert asyncio.get_running_loop().time() < deadline, "the gateway never became ready"
                await asyncio.sleep(0.02)
            yield RepositoryStack(gateway, deployer, registry, ray)
