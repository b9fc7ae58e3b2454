"""/v1/rollouts and /v1/models/{model}/rollback."""

from __future__ import annotations

from fastapi import APIRouter, Body, Query, status

from fleet_core.auth import Role
from fleet_core.events import RolloutPhase, RolloutRequested, Strategy
from fleet_deployer.api.deps import (
    ControllerDep,
    CurrentPrincipal,
    Limit,
    ModelPath,
    ModelQuery,
    Offset,
    PublishedDep,
    RolloutIdPath,
    TeamQuery,
    visible_teams,
)
from fleet_deployer.api.schemas import RollbackRequest, RolloutCreate, RolloutPage
from fleet_deployer.controller import RolloutCommand
from fleet_deployer.entities import Rollout, RolloutFilter, RolloutSort

router = APIRouter(tags=["rollouts"])


@router.post(
    "/v1/rollouts",
    status_code=status.HTTP_201_CREATED,
    summary="Request a rollout",
    description="`direct` deploys the version and routes all traffic to it. `canary` moves traffic "
    "through `steps` (each held `step_interval_s` and advanced only on a passing `rollout.analysis` "
    "from the monitor; a failing verdict or a latency/error anomaly rolls back). `ab` runs a sticky "
    "split (`arms`, default 50/50) until the monitor's significance test on `kpi` picks a winner or "
    "`duration_s` passes. `shadow` mirrors traffic to the candidate. `blue_green` smoke-tests the "
    "candidate on its example input, switches all traffic at once and retires the old version after "
    "`duration_s` (the rollback window, default 300 s). 409 while another progressive rollout of the "
    "model is under way.",
)
async def create_rollout(
    body: RolloutCreate,  # type: ignore[valid-type]
    controller: ControllerDep,
    principal: CurrentPrincipal,
    published: PublishedDep,
) -> Rollout:
    request = RolloutRequested(**body.model_dump(), requested_by=principal.subject)  # type: ignore[attr-defined]
    known = await controller.resolve(request.model, request.version)
    principal.require(Role.DEPLOYER, known.team)
    rollout = await controller.on_rollout_requested(None, request)
    await published()
    return rollout


@router.get(
    "/v1/rollouts",
    summary="Rollouts, a page at a time (newest first unless sorted otherwise)",
    description="Filters combine and apply within the teams the caller may read; `total` counts "
    "every match. `sort`: `created`, `updated` or `model`; a leading `-` sorts descending.",
)
async def list_rollouts(
    controller: ControllerDep,
    principal: CurrentPrincipal,
    limit: Limit = 100,
    offset: Offset = 0,
    model: ModelQuery = None,
    team: TeamQuery = None,
    phase: RolloutPhase | None = Query(default=None),
    strategy: Strategy | None = Query(default=None, description="direct, canary, ab, shadow, blue_green"),
    sort: RolloutSort = Query(default="-created", description="created, updated, model; -desc"),
) -> RolloutPage:
    where = RolloutFilter(
        teams=visible_teams(principal), team=team, model=model, phase=phase, strategy=strategy
    )
    items, total = await controller.rollouts(where, sort=sort, limit=limit, offset=offset)
    return RolloutPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/v1/rollouts/{rollout_id}", summary="One rollout")
async def get_rollout(
    rollout_id: RolloutIdPath, controller: ControllerDep, principal: CurrentPrincipal
) -> Rollout:
    rollout = await controller.rollout(rollout_id)
    principal.require(Role.VIEWER, rollout.team)
    return rollout


@router.post(
    "/v1/models/{model}/rollback",
    status_code=status.HTTP_201_CREATED,
    summary="Roll back to the previous stable version",
    description="Routes all traffic to the newest earlier version that took 100 % and was not rolled "
    "back from; takes effect on the gateway's next request. 409 when there is none.",
)
async def rollback(
    model: ModelPath,
    controller: ControllerDep,
    principal: CurrentPrincipal,
    published: PublishedDep,
    body: RollbackRequest | None = Body(default=None),
) -> Rollout:
    principal.require(Role.DEPLOYER, await controller.team_of(model))
    rollout = await controller.rollback(model, principal.subject, body.reason if body else None)
    await published()
    return rollout


@router.post(
    "/v1/rollouts/{rollout_id}/{command}",
    summary="Pause, resume, promote or abort a progressive rollout",
    description="`pause` holds the current step (verdicts are still recorded); `resume` restarts "
    "the step's hold; `promote` gives the candidate all traffic now; `abort` routes all traffic "
    "back to the baseline. 409 when the rollout is not a progressive one under way.",
)
async def command_rollout(
    rollout_id: RolloutIdPath,
    command: RolloutCommand,
    controller: ControllerDep,
    principal: CurrentPrincipal,
    published: PublishedDep,
) -> Rollout:
    rollout = await controller.rollout(rollout_id)
    principal.require(Role.DEPLOYER, rollout.team)
    done = await controller.command(rollout_id, command, principal.subject)
    await published()
    return done
