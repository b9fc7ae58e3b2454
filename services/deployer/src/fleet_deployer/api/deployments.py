"""/v1/deployments: what runs where, deploy (direct), retire a version, undeploy a model."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response, status

from fleet_core.auth import Role
from fleet_core.serving import DeploymentState, ModelRoute, PlacementKind
from fleet_deployer.api.deps import (
    ControllerDep,
    CurrentPrincipal,
    Limit,
    ModelPath,
    Offset,
    PublishedDep,
    TeamQuery,
    VersionPath,
    visible_teams,
)
from fleet_deployer.api.schemas import (
    DeploymentCreate,
    DeploymentCreated,
    DeploymentDetail,
    DeploymentPage,
    ModelDeployments,
)
from fleet_deployer.controller import DeployFailed
from fleet_deployer.entities import DeploymentFilter, DeploymentSort

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])


@router.get(
    "",
    summary="Deployed versions, a page at a time: placement, state, replicas, activity, traffic",
    description="Filters combine (all must match) and apply within the teams the caller may read; "
    "`total` counts every match. `sort`: `name` (model, then version), `updated`, `last_request` "
    "(never requested counts as oldest) or `traffic` (percent of primary traffic); a leading `-` "
    "sorts descending. Ray is asked about the applications on the page only (the pool once).",
)
async def list_deployments(
    controller: ControllerDep,
    principal: CurrentPrincipal,
    limit: Limit = 50,
    offset: Offset = 0,
    team: TeamQuery = None,
    state: DeploymentState | None = Query(default=None, description="Only this state (`retired` too)"),
    idle: bool | None = Query(default=None, description="Only idle (true) or only active (false)"),
    placement: PlacementKind | None = Query(default=None, description="The shared pool or dedicated"),
    name: str | None = Query(default=None, min_length=1, max_length=100, description="Model name contains"),
    sort: DeploymentSort = Query(default="name", description="name, updated, last_request, traffic; -desc"),
    include_retired: bool = Query(default=False, description="Also list retired deployments"),
) -> DeploymentPage:
    where = DeploymentFilter(
        teams=visible_teams(principal),
        team=team,
        name=name,
        state=state,
        placement=placement,
        idle=idle,
        include_retired=include_retired,
    )
    views, total, _ = await controller.deployment_views(where, sort=sort, limit=limit, offset=offset)
    return DeploymentPage(items=views, total=total, limit=limit, offset=offset)


@router.get("/{model}", summary="One model's deployments with Ray Serve's view of each application")
async def get_model_deployments(
    model: ModelPath,
    controller: ControllerDep,
    principal: CurrentPrincipal,
    include_retired: bool = Query(default=False, description="Also list retired deployments"),
) -> ModelDeployments:
    team = await controller.team_of(model)
    principal.require(Role.VIEWER, team)
    views, _, apps = await controller.deployment_views(
        DeploymentFilter(model=model, include_retired=include_retired)
    )
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


@router.delete(
    "/{model}",
    summary="Undeploy a model: no route, every deployment retired",
    description="The route table becomes empty (a new revision on `rollout.updated`; the gateway "
    "answers 404 for the model from then on), a progressive rollout under way is aborted, and "
    "every deployed version is retired and removed from Ray. A model already undeployed is left "
    "as it is; `POST /v1/models/{model}/rollback` routes it back to its last stable version. "
    "Answers the model's route after it.",
)
async def undeploy_model(
    model: ModelPath, controller: ControllerDep, principal: CurrentPrincipal, published: PublishedDep
) -> ModelRoute:
    principal.require(Role.DEPLOYER, await controller.team_of(model))
    route = await controller.undeploy(model, principal.subject)
    await published()
    return route
