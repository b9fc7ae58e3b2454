"""Dependencies of the deployer API, declared once as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from fleet_core.auth import CurrentPrincipal, Principal
from fleet_deployer.api.schemas import MAX_VERSION, MODEL_NAME_PATTERN
from fleet_deployer.controller import DeploymentController

__all__ = [
    "ControllerDep",
    "CurrentPrincipal",
    "Limit",
    "ModelPath",
    "ModelQuery",
    "Offset",
    "PublishedDep",
    "RolloutIdPath",
    "TeamQuery",
    "VersionPath",
    "visible_teams",
]

# A route change answers once its rollout.updated event is on the broker (acks=all), so gateways
# see it within their consumer's poll, not the relay's; never longer than this, never an error.
PUBLISH_WAIT_S = 3.0


class Published:
    """``await published()`` waits until the outbox has published what this request enqueued."""

    def __init__(self, request: Request) -> None:
        self._relay = getattr(request.app.state, "relay", None)

    async def __call__(self) -> bool:
        return await self._relay.drained(PUBLISH_WAIT_S) if self._relay is not None else False


def _controller(request: Request) -> DeploymentController:
    return request.app.state.controller  # type: ignore[no-any-return]


def visible_teams(principal: Principal) -> list[str] | None:
    """The teams whose resources ``principal`` may read; None means every team."""
    if principal.sees_all_teams:
        return None
    return list(principal.teams)


ControllerDep = Annotated[DeploymentController, Depends(_controller)]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=2**62, description="Items to skip")]
ModelPath = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, max_length=100, description="Model name")]
ModelQuery = Annotated[
    str | None, Query(pattern=MODEL_NAME_PATTERN, max_length=100, description="Only this model")
]
TeamQuery = Annotated[
    str | None, Query(min_length=1, max_length=100, description="Only this team (of those you may read)")
]
VersionPath = Annotated[int, Path(ge=1, le=MAX_VERSION, description="Version number")]
RolloutIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
PublishedDep = Annotated[Published, Depends(Published)]
