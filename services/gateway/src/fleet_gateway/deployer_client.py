"""The deployer's deployment API as the gateway's model repository extension calls it: with the
caller's own bearer token.

The gateway decides nothing about who may load or unload a model: the deployer's role-and-team
checks answer for the caller (a viewer cannot deploy, another team cannot undeploy, a listing shows
only the caller's teams). A problem+json answer is raised again as the same problem (status, type,
title, detail, field), so the caller reads the deployer's own reason; a deployer that cannot be
reached is a 503.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import orjson
from pydantic import BaseModel, ConfigDict

from fleet_core.errors import FleetError, Unavailable
from fleet_core.log import REQUEST_ID_HEADER, current_request_id
from fleet_core.serving import DeploymentState, ModelRoute

PAGE = 500
"""The deployer's largest page of ``GET /v1/deployments``."""


class DeployerProblem(FleetError):
    """A refusal or failure the deployer answered, passed on as it said it."""

    def __init__(self, status: int, kind: str, title: str, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.status, self.kind, self.title = status, kind, title

    @classmethod
    def from_response(cls, response: httpx.Response) -> DeployerProblem:
        status = response.status_code
        try:
            body: Any = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return cls(502, "deployer-error", "Deployer error", f"the deployer answered {status}")
        detail = str(body.get("detail") or body.get("title") or f"the deployer answered {status}")
        kind = str(body.get("type") or "deployer-error").rstrip("/").rsplit("/", 1)[-1]
        field = body.get("field") if isinstance(body.get("field"), str) else None
        # A deployer that failed unexpectedly is a bad gateway here, not this gateway's own 500.
        return cls(
            502 if status == 500 else status, kind, str(body.get("title") or kind), detail, field=field
        )


class DeploymentItem(BaseModel):
    """What the repository index reads of one ``GET /v1/deployments`` item."""

    model_config = ConfigDict(extra="ignore")

    model: str
    version: int
    team: str
    state: DeploymentState
    error: str | None = None


class DeployedModel(BaseModel):
    """What a deploy answers that the gateway uses: the model's route after it."""

    model_config = ConfigDict(extra="ignore")

    route: ModelRoute


class DeployerClient:
    """``GET/POST /v1/deployments`` and ``DELETE /v1/deployments/{model}`` on behalf of a caller."""

    def __init__(
        self, deployer_url: str, *, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._base = deployer_url.rstrip("/") + "/v1/deployments"
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(timeout=timeout_s, transport=transport)

    async def close(self) -> None:
        await self._client.aclose()

    async def _send(self, method: str, url: str, authorization: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": authorization}
        request_id = current_request_id()
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        try:
            response = await self._client.request(method, url, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise Unavailable(
                f"the deployer did not answer within {self._timeout_s:g} s; a load may still finish "
                "(see POST /v2/repository/index)",
                headers={"Retry-After": "5"},
            ) from exc
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"the deployer cannot be reached: {type(exc).__name__}", headers={"Retry-After": "5"}
            ) from exc
        if response.is_error:
            raise DeployerProblem.from_response(response)
        return response

    async def deployments(
        self, authorization: str, *, state: DeploymentState | None = None, include_retired: bool = False
    ) -> list[DeploymentItem]:
        """Every deployment the caller may read (all pages), by model then version."""
        params: dict[str, Any] = {"limit": PAGE, "sort": "name"}
        if state is not None:
            params["state"] = state
        if include_retired:
            params["include_retired"] = "true"
        items: list[DeploymentItem] = []
        while True:
            page = (
                await self._send("GET", self._base, authorization, params={**params, "offset": len(items)})
            ).json()
            batch = [DeploymentItem.model_validate(item) for item in page["items"]]
            items.extend(batch)
            if not batch or len(items) >= int(page["total"]):
                return items

    async def deploy(self, authorization: str, model: str) -> ModelRoute:
        """Deploy the model's latest registered version (direct: all traffic); its route after."""
        response = await self._send("POST", self._base, authorization, json={"model": model})
        return DeployedModel.model_validate_json(response.content).route

    async def undeploy(self, authorization: str, model: str) -> ModelRoute:
        """Undeploy the model (empty route table, every version retired); its route after."""
        response = await self._send("DELETE", f"{self._base}/{quote(model, safe='')}", authorization)
        return ModelRoute.model_validate_json(response.content)
