"""/v1/pool: the shared pool's replicas, their memory budget and what each loaded version costs."""

from __future__ import annotations

from fastapi import APIRouter

from fleet_core.auth import Role
from fleet_deployer.api.deps import ControllerDep, CurrentPrincipal, visible_teams
from fleet_deployer.pool import PoolView

router = APIRouter(prefix="/v1/pool", tags=["pool"])


@router.get(
    "",
    summary="The shared pool: per replica its model budget, loaded versions with their bytes, evictions",
    description="Each running replica is asked for its cache. Versions are shown for the caller's "
    "teams only (admins: all); a replica's totals are shown to every caller. `refused` lists "
    "pool-placed versions too large for a replica's budget: they need a dedicated deployment.",
)
async def get_pool(controller: ControllerDep, principal: CurrentPrincipal) -> PoolView:
    principal.require_role(Role.VIEWER)
    return await controller.pool_view(visible_teams(principal))
