"""Looks up a version in the registry: the truth behind every ``model.registered`` event (which is
only a notification), and versions the deployer never saw an event for.

It authenticates with a short-lived viewer token for every team, minted with the shared JWT secret.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx

from fleet_core.auth import ALL_TEAMS, Role, TokenAuthority
from fleet_core.errors import NotFound, Unavailable
from fleet_core.serving import ModelSpec
from fleet_deployer.entities import KnownVersion

SERVICE_SUBJECT = "service:deployer"


def _segment(name: str) -> str:
    """A model name as one URL path segment: a name from an event cannot reach another route."""
    return quote(name, safe="")


class RegistryClient:
    """``GET /v1/models/{name}`` and ``/versions/{v}`` on the registry."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenAuthority,
        *,
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._tokens = tokens
        self._client = client or httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def close(self) -> None:
        await self._client.aclose()

    def _headers(self) -> dict[str, str]:
        token, _, _ = self._tokens.issue(SERVICE_SUBJECT, Role.VIEWER, [ALL_TEAMS], ttl=timedelta(minutes=5))
        return {"Authorization": f"Bearer {token}"}

    async def _get(self, path: str, what: str, field: str) -> dict[str, Any]:
        try:
            response = await self._client.get(path, headers=self._headers())
        except httpx.HTTPError as exc:
            raise Unavailable(f"the registry cannot be reached to look up {what}: {exc}") from exc
        if response.status_code == 404:
            raise NotFound(f"{what} does not exist", field=field)
        if response.status_code >= 400:
            raise Unavailable(f"the registry answered {response.status_code} when looking up {what}")
        body: dict[str, Any] = response.json()
        return body

    async def version(self, model: str, version: int) -> KnownVersion:
        body = await self._get(
            f"/v1/models/{_segment(model)}/versions/{int(version)}",
            f"model '{model}' version {version}",
            "version",
        )
        spec = ModelSpec.model_validate({k: body.get(k) for k in ModelSpec.model_fields if k in body})
        return KnownVersion.model_validate(
            {
                "spec": spec,
                "quota": body.get("quota"),
                "deploy_policy": body.get("deploy_policy", "none"),
                "source": "registry",
                "registered_by": body.get("created_by"),
            }
        )

    async def delivery(self, model: str, version: int) -> dict[str, Any]:
        """Where a version stands in its model's delivery gate (``GET .../checks``)."""
        return await self._get(
            f"/v1/models/{_segment(model)}/versions/{int(version)}/checks",
            f"model '{model}' version {version}",
            "version",
        )

    async def latest_version(self, model: str) -> int:
        body = await self._get(f"/v1/models/{_segment(model)}", f"model '{model}'", "model")
        latest = body.get("latest_version")
        if latest is None:
            raise NotFound(f"model '{model}' has no versions", field="version")
        return int(latest)
