"""/v1/jobs and /v1/policies: retraining jobs (start one, list, show, logs) and per-model policies.

Every route checks role and team. A model's team is the registry's; a job's is the one recorded when
it was created. A model or job whose team is unknown is reachable only by principals who see every
team (``Principal.require`` fails closed), and listings show only jobs of the caller's teams."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status
from pydantic import Field

from fleet_core.auth import CurrentPrincipal, Role
from fleet_core.schemas import Contract
from fleet_retrainer.engine import RetrainController
from fleet_retrainer.entities import Job, JobLogs, JobPage, JobSort
from fleet_retrainer.policy import JobState, RetrainPolicy

MODEL_NAME = r"^[a-z0-9][a-z0-9._-]{0,99}$"
"""The registry's model names (lowercase, digits, . _ -)."""
ModelName = Annotated[str, Path(pattern=MODEL_NAME, description="A model name")]
JobId = Annotated[
    str,
    # Job ids are UUIDs: anything else (a NUL byte PostgreSQL refuses, a 5 kB string) is a 422.
    Path(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description="A job id"),
]


def _controller(request: Request) -> RetrainController:
    return request.app.state.controller  # type: ignore[no-any-return]


ControllerDep = Annotated[RetrainController, Depends(_controller)]
api_router = APIRouter(tags=["jobs"])


class JobRequest(Contract):
    model: str = Field(pattern=MODEL_NAME)
    version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="The champion to retrain (default: the latest)"
    )


class JobStarted(Contract):
    action: str = Field(description="start, queue or skip")
    reason: str
    job: Job | None


@api_router.post(
    "/v1/jobs",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Retrain a model now",
    description="A manual request skips the cooldown and the labelled-rows minimum, never the rule of one "
    "job per model at a time (then `action` is `skip`, with the reason). Needs `scientist` on the "
    "model's team.",
)
async def start_job(body: JobRequest, controller: ControllerDep, principal: CurrentPrincipal) -> JobStarted:
    principal.require_role(Role.SCIENTIST)  # before asking the registry anything
    principal.require(Role.SCIENTIST, await controller.team_of(body.model))
    decision, job = await controller.on_trigger(
        body.model, "manual", requested_by=principal.subject, version=body.version
    )
    return JobStarted(action=decision.action, reason=decision.reason, job=job)


@api_router.get(
    "/v1/jobs",
    summary="Jobs of the caller's teams, a page at a time (newest first unless sorted otherwise)",
    description="Filters combine and apply within the teams the caller may read; `total` counts "
    "every match. `sort`: `created` or `model`; a leading `-` sorts descending.",
)
async def list_jobs(
    controller: ControllerDep,
    principal: CurrentPrincipal,
    model: Annotated[str | None, Query(pattern=MODEL_NAME)] = None,
    team: Annotated[str | None, Query(min_length=1, max_length=100, description="Only this team")] = None,
    state: JobState | None = None,
    sort: Annotated[JobSort, Query(description="created, model; -desc")] = "-created",
    limit: Annotated[int, Query(ge=1, le=500, description="Page size")] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62, description="Items to skip")] = 0,
) -> JobPage:
    principal.require_role(Role.VIEWER)
    teams = None if principal.sees_all_teams else principal.teams
    async with controller.store.transaction() as s:
        items, total = await controller.store.job_page(
            s, teams=teams, team=team, model=model, state=state, sort=sort, limit=limit, offset=offset
        )
    return JobPage(items=items, total=total, limit=limit, offset=offset)


@api_router.get("/v1/jobs/{job_id}", summary="One job and its outcome")
async def get_job(job_id: JobId, controller: ControllerDep, principal: CurrentPrincipal) -> Job:
    principal.require_role(Role.VIEWER)
    job = await controller.job(job_id)
    principal.require(Role.VIEWER, job.team)
    return job


@api_router.get("/v1/jobs/{job_id}/logs", summary="What the job did, step by step")
async def job_logs(job_id: JobId, controller: ControllerDep, principal: CurrentPrincipal) -> JobLogs:
    principal.require_role(Role.VIEWER)
    job = await controller.job(job_id)
    principal.require(Role.VIEWER, job.team)
    async with controller.store.transaction() as s:
        lines = await controller.store.logs(s, job_id)
    return JobLogs(id=job_id, lines=lines or [])


@api_router.get("/v1/policies/{model}", tags=["policies"], summary="A model's retraining policy")
async def get_policy(
    model: ModelName, controller: ControllerDep, principal: CurrentPrincipal
) -> RetrainPolicy:
    principal.require_role(Role.VIEWER)
    principal.require(Role.VIEWER, await controller.team_of(model))
    return await controller.policy(model)


@api_router.put(
    "/v1/policies/{model}",
    tags=["policies"],
    summary="Set a model's retraining policy (needs `deployer` on the model's team)",
    description="Only the model's own settings; the box-wide job limit is the operator's "
    "`FLEET_MAX_CONCURRENT_JOBS`, not part of any policy.",
)
async def put_policy(
    model: ModelName, body: RetrainPolicy, controller: ControllerDep, principal: CurrentPrincipal
) -> RetrainPolicy:
    principal.require_role(Role.DEPLOYER)
    principal.require(Role.DEPLOYER, await controller.team_of(model))
    return await controller.put_policy(model, body, by=principal.subject)
