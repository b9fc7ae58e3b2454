"""The deployer's registry client keeps a model name from an event inside its path segment."""

from __future__ import annotations

import httpx
import pytest

from fleet_core.auth import TokenAuthority
from fleet_core.errors import NotFound
from fleet_deployer.registry_client import RegistryClient


@pytest.mark.parametrize("name", ["../../v1/tokens", "a/b", "x?y=1", "churn#frag"])
async def test_a_model_name_cannot_reach_another_registry_route(name: str) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(404, json={"status": 404})

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://registry")
    registry = RegistryClient("http://registry", TokenAuthority("s" * 40), client=client)
    with pytest.raises(NotFound):
        await registry.version(name, 1)
    with pytest.raises(NotFound):
        await registry.latest_version(name)
    for path in seen:
        assert path.startswith("/v1/models/") and path.count("/") in (3, 5), path
        assert "?" not in path and "#" not in path
