"""``GET /v1/local-models``: the small pool models this gateway process serves itself.

Each gateway process keeps its own (``fleet_gateway.local``); the listing shows the caller's teams'
models only (an admin's, or a ``*`` member's: all), loaded ones most recently used first, and the
ones that will not be served here with the reason.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from fleet_core.auth import Role
from fleet_gateway.api.deps import CallerDep
from fleet_gateway.local import LocalModels, LocalStats

router = APIRouter(prefix="/v1", tags=["inference"])


@router.get(
    "/local-models",
    summary="Models this gateway process serves itself, their bytes and calls",
    response_model=LocalStats,
)
async def local_models(request: Request, caller: CallerDep) -> LocalStats:
    caller.require_role(Role.VIEWER)
    models: LocalModels = request.app.state.local_models
    return models.stats(visible=caller.in_team)
