"""/v1/jobs and /v1/policies: retraining jobs (start one, list, show, logs) and per-model policies."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import Field

from fleet_core.auth import CurrentPrincipal, Role
from fleet_core.schemas import Contract
from fleet_retrainer.engine import RetrainController
from fleet_retrainer.entities import Job, JobLogs
from fleet_retrainer.policy import RetrainPolicy


def _controller(request: Request) -> RetrainController:
    return request.app.state.controller  # type: ignore[no-any-return]


ControllerDep = Annotated[RetrainController, Depends(_controller)]
api_router = APIRouter(tags=["jobs"])


class JobRequest(Contract):
    model: str = Field(min_length=1, max_length=100)
    version: int | None = Field(
        default=None, ge=1, description="The champion to retrain (default: the latest)"
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
    "job per model at a time (then `action` is `skip`, with the reason). Needs `scientist`.",
)
async def start_job(body: JobRequest, controller: ControllerDep, principal: CurrentPrincipal) -> JobStarted:
    principal.require_role(Role.SCIENTIST)
    decision, job = await controller.on_trigger(
        body.model, "manual", requested_by=principal.subject, version=body.version
    )
    return JobStarted(action=decision.action, reason=decision.reason, job=job)


@api_router.get("/v1/jobs", summary="Jobs, newest first")
async def list_jobs(
    controller: ControllerDep,
    principal: CurrentPrincipal,
    model: str | None = None,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Job]:
    principal.require_role(Role.VIEWER)
    async with controller.store.transaction() as s:
        return await controller.store.jobs(s, model=model, state=state, limit=limit)


@api_router.get("/v1/jobs/{job_id}", summary="One job and its outcome")
async def get_job(job_id: str, controller: ControllerDep, principal: CurrentPrincipal) -> Job:
    principal.require_role(Role.VIEWER)
    return await controller.job(job_id)


@api_router.get("/v1/jobs/{job_id}/logs", summary="What the job did, step by step")
async def job_logs(job_id: str, controller: ControllerDep, principal: CurrentPrincipal) -> JobLogs:
    principal.require_role(Role.VIEWER)
    await controller.job(job_id)
    async with controller.store.transaction() as s:
        lines = await controller.store.logs(s, job_id)
    return JobLogs(id=job_id, lines=lines or [])


@api_router.get("/v1/policies/{model}", tags=["policies"], summary="A model's retraining policy")
async def get_policy(model: str, controller: ControllerDep, principal: CurrentPrincipal) -> RetrainPolicy:
    principal.require_role(Role.VIEWER)
    return await controller.policy(model)


@api_router.put(
    "/v1/policies/{model}", tags=["policies"], summary="Set a model's retraining policy (needs `deployer`)"
)
async def put_policy(
    model: str, body: RetrainPolicy, controller: ControllerDep, principal: CurrentPrincipal
) -> RetrainPolicy:
    principal.require_role(Role.DEPLOYER)
    return await controller.put_policy(model, body, by=principal.subject)
