"""/v1/deployments: what runs where, deploy (direct), retire."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response, status

from fleet_core.auth import Role
from fleet_deployer.api.deps import (
    ControllerDep,
    CurrentPrincipal,
    ModelPath,
    PublishedDep,
    VersionPath,
    visible_teams,
)
from fleet_deployer.api.schemas import (
    DeploymentCreate,
    DeploymentCreated,
    DeploymentDetail,
    ModelDeployments,
)
from fleet_deployer.controller import DeployFailed
from fleet_deployer.entities import DeploymentView

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])


@router.get("", summary="Every deployed version: placement, state, replicas, activity, traffic")
async def list_deployments(
    controller: ControllerDep,
    principal: CurrentPrincipal,
    include_retired: bool = Query(default=False, description="Also list retired deployments"),
) -> list[DeploymentView]:
    views, _ = await controller.deployment_views(
        teams=visible_teams(principal), include_retired=include_retired
    )
    return views


@router.get("/{model}", summary="One model's deployments with Ray Serve's view of each application")
async def get_model_deployments(
    model: ModelPath,
    controller: ControllerDep,
    principal: CurrentPrincipal,
    include_retired: bool = Query(default=False, description="Also list retired deployments"),
) -> ModelDeployments:
    team = await controller.team_of(model)
    principal.require(Role.VIEWER, team)
    views, apps = await controller.deployment_views(teams=None, model=model, include_retired=include_retired)
    route = await controller.model_route(model)
    details = [DeploymentDetail(**v.model_dump(), ray=apps.get(v.placement.app)) for v in views]
    return ModelDeployments(model=model, team=team, route=route.table, deployments=details)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Deploy a version and route all traffic to it (direct)",
    description="Placed in the shared pool, or in a dedicated deployment when the request or the "
    "version's registration carries a quota. 502 (problem+json) if Ray refuses it; the failed "
    "rollout is recorded either way.",
)
async def create_deployment(
    body: DeploymentCreate, controller: ControllerDep, principal: CurrentPrincipal, published: PublishedDep
) -> DeploymentCreated:
    known = await controller.resolve(body.model, body.version)
    principal.require(Role.DEPLOYER, known.team)
    rollout = await controller.deploy(body.model, known.version, body.quota, principal.subject)
    if rollout.phase == "failed":
        raise DeployFailed(f"{rollout.reason} (rollout {rollout.id})", field="version")
    await published()
    return DeploymentCreated(rollout=rollout, route=await controller.model_route(body.model))


@router.delete(
    "/{model}/{version}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Retire a deployment that carries no traffic",
    description="409 while any arm of the route table (primary or shadow) points at it.",
)
async def delete_deployment(
    model: ModelPath, version: VersionPath, controller: ControllerDep, principal: CurrentPrincipal
) -> Response:
    principal.require(Role.DEPLOYER, await controller.team_of(model))
    await controller.retire(model, version, principal.subject)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
