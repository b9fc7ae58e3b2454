"""/v1/routes: every model's route table (for gateways), one model's, and explicit tables."""

from __future__ import annotations

from fastapi import APIRouter, Query

from fleet_core.auth import Role
from fleet_core.serving import ModelRoute, RoutesSnapshot
from fleet_deployer.api.deps import (
    ControllerDep,
    CurrentPrincipal,
    ModelPath,
    PublishedDep,
    visible_teams,
)
from fleet_deployer.api.schemas import BatchingUpdate, RouteTableUpdate

router = APIRouter(prefix="/v1/routes", tags=["routes"])


@router.get(
    "",
    summary="Every route table the caller may read, with the versions they reference",
    description="What a gateway bootstraps from; later changes arrive on `rollout.updated`.",
)
async def list_routes(controller: ControllerDep, principal: CurrentPrincipal) -> RoutesSnapshot:
    return await controller.snapshot(visible_teams(principal))


@router.get("/{model}", summary="One model's route table and the versions it references")
async def get_route(model: ModelPath, controller: ControllerDep, principal: CurrentPrincipal) -> ModelRoute:
    principal.require(Role.VIEWER, await controller.team_of(model))
    return await controller.model_route(model)


@router.put(
    "/{model}",
    summary="Set an explicit route table",
    description="Weighted primary arms (weights sum to 100), an optional sticky split (by "
    "`X-Fleet-Routing-Key`) and shadow arms (weight ignored; their answers are never returned). "
    "A known version that is not deployed yet is deployed first (502 and no change if Ray refuses "
    "it). The revision increases and `rollout.updated` carries the whole table.",
)
async def put_route(
    model: ModelPath,
    body: RouteTableUpdate,
    controller: ControllerDep,
    principal: CurrentPrincipal,
    published: PublishedDep,
) -> ModelRoute:
    principal.require(Role.DEPLOYER, await controller.team_of(model))
    route = await controller.set_routes(model, body.arms, principal.subject, body.expected_revision)
    await published()
    return route


@router.put(
    "/{model}/batching",
    summary="Set how gateways batch the model's requests",
    description="Adaptive batching per model: `max_rows` (1 turns it off), `max_delay_ms`, "
    "`max_inflight`; a field left out takes the gateway's default (`FLEET_BATCH_*`). The settings "
    "ride on the route table: a new revision with the same arms, on `rollout.updated`, kept by "
    "every later table (canary steps, rollbacks).",
)
async def put_batching(
    model: ModelPath,
    body: BatchingUpdate,
    controller: ControllerDep,
    principal: CurrentPrincipal,
    published: PublishedDep,
) -> ModelRoute:
    principal.require(Role.DEPLOYER, await controller.team_of(model))
    route = await controller.set_batching(model, body.settings(), principal.subject, body.expected_revision)
    await published()
    return route


@router.delete(
    "/{model}/batching",
    summary="Batch the model's requests with the gateways' defaults again",
    description="A new route table revision without batch settings, on `rollout.updated`.",
)
async def reset_batching(
    model: ModelPath,
    controller: ControllerDep,
    principal: CurrentPrincipal,
    published: PublishedDep,
    expected_revision: int | None = Query(default=None, ge=0, le=2**62),
) -> ModelRoute:
    principal.require(Role.DEPLOYER, await controller.team_of(model))
    route = await controller.set_batching(model, None, principal.subject, expected_revision)
    await published()
    return route
