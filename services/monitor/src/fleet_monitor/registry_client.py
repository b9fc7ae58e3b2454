"""Looks up a version in the registry when traffic arrives for a version the monitor never saw a
``model.registered`` for: the topics are separate, so traffic can overtake its registration, and a
monitor started after the broker's retention lost old registrations still needs the profiles.

It authenticates with a short-lived viewer token for every team, minted with the shared JWT secret.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx

from fleet_core.auth import ALL_TEAMS, Role, TokenAuthority
from fleet_core.events import ModelRegistered
from fleet_core.log import get_logger

log = get_logger(__name__)
SERVICE_SUBJECT = "service:monitor"


class RegistryClient:
    def __init__(self, base_url: str, tokens: TokenAuthority, *, timeout_s: float = 10.0) -> None:
        self._tokens = tokens
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def close(self) -> None:
        await self._client.aclose()

    async def version(self, model: str, version: int) -> ModelRegistered | None:
        """The version as a ``model.registered`` payload; None if the registry does not know it.
        Raises ``httpx.HTTPError`` when the registry cannot answer (the caller retries later)."""
        token, _, _ = self._tokens.issue(SERVICE_SUBJECT, Role.VIEWER, [ALL_TEAMS], ttl=timedelta(minutes=5))
        # Quoted although event contracts validate names: a name must never walk the registry's paths.
        response = await self._client.get(
            f"/v1/models/{quote(model, safe='')}/versions/{int(version)}",
            headers={"Authorization": f"Bearer {token}"},
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        fields = {k: body[k] for k in ModelRegistered.model_fields if k in body}
        fields.setdefault("registered_by", body.get("created_by", "unknown"))
        return ModelRegistered.model_validate(fields)

    async def review(
        self, model: str, version: int, body: dict[str, Any], authorization: str
    ) -> tuple[int, dict[str, Any]]:
        """Forward a person's review of a version to the registry with *their* token (the registry
        decides who may approve); the registry's status and body. ``httpx.HTTPError`` when it
        cannot be reached."""
        response = await self._client.post(
            f"/v1/models/{quote(model, safe='')}/versions/{int(version)}/reviews",
            json=body,
            headers={"Authorization": authorization},
        )
        try:
            answer: dict[str, Any] = response.json()
        except ValueError:
            answer = {"detail": response.text[:500]}
        return response.status_code, answer
