"""/v1/overview and /v1/models: the fleet at a glance, one model in depth, per-model thresholds."""

from __future__ import annotations

from typing import Annotated, Literal

import httpx
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from fleet_core.auth import Role
from fleet_core.errors import NotFound, Unavailable
from fleet_monitor.api.deps import (
    MAX_INT,
    CurrentPrincipal,
    EngineDep,
    OverviewParams,
    ReadAccess,
    Reader,
    StoreDep,
)
from fleet_monitor.api.schemas import ConfigView, ModelDetail, Overview
from fleet_monitor.config import ModelConfig
from fleet_monitor.engine import MonitorEngine
from fleet_monitor.views import model_detail, model_names, overview

router = APIRouter(prefix="/v1", tags=["models"])


@router.get(
    "/overview",
    summary="The fleet, a page at a time: traffic, latency, errors, drift, alerts, rollout per model",
    description="Filter by name (`q` contains, `model` exact), `team`, `state`, `alerting`, `drifting`, "
    "`rollout` in progress; sort by `name`, `rps`, `error_rate`, `latency_p95`, `drift` or `alerts`; "
    "page with `limit` and `offset`. `total` counts the matching models, `total_models`, "
    "`alerts_firing` and `events_ingested` every model the caller may see (its teams only).",
)
async def get_overview(engine: EngineDep, store: StoreDep, reader: Reader, query: OverviewParams) -> Overview:
    async with store.transaction() as s:
        firing = await store.firing_counts(s)
    return overview(engine, firing, sees=reader.sees, query=query)


def visible_models(engine: MonitorEngine, reader: ReadAccess) -> list[str] | None:
    """The models ``reader`` may read; None when it sees them all (no filter needed)."""
    if reader.sees_all:
        return None
    return [name for name in model_names(engine) if reader.sees(engine.team_of(name))]


def require_model(engine: MonitorEngine, reader: ReadAccess, name: str) -> None:
    """404 for a model the monitor has never seen; 403 unless ``reader`` is in the model's team."""
    if name not in model_names(engine):
        raise NotFound(f"the monitor has seen no model named {name!r}", field="name")
    reader.require(engine.team_of(name))


@router.get("/models/{name}", summary="One model: versions and lineage, charts, drift, rollout, alerts")
async def get_model(name: str, engine: EngineDep, store: StoreDep, reader: Reader) -> ModelDetail:
    require_model(engine, reader, name)
    async with store.transaction() as s:
        alerts = await store.alerts(s, model=name, limit=50)
    detail = model_detail(engine, name, alerts)
    if detail is None:
        raise NotFound(f"the monitor has seen no model named {name!r}", field="name")
    return detail


@router.get(
    "/models/{name}/config", summary="A model's monitoring thresholds: its overrides and the effective values"
)
async def get_config(name: str, engine: EngineDep, reader: Reader) -> ConfigView:
    require_model(engine, reader, name)
    own = engine.configs.get(name, ModelConfig())
    return ConfigView(
        model=name,
        overrides=own.model_dump(exclude_none=True),
        effective={**_effective(engine, name)},
    )


@router.put(
    "/models/{name}/config",
    summary="Set a model's monitoring thresholds",
    description="Replaces the model's overrides; fields left out use the service defaults. Takes effect "
    "from the next window. Needs the `deployer` role in the model's team.",
)
async def put_config(
    name: str, body: ModelConfig, engine: EngineDep, principal: CurrentPrincipal
) -> ConfigView:
    if name not in model_names(engine):
        raise NotFound(f"the monitor has seen no model named {name!r}", field="name")
    principal.require(Role.DEPLOYER, engine.team_of(name))
    await engine.put_config(name, body, by=principal.subject)
    return ConfigView(
        model=name, overrides=body.model_dump(exclude_none=True), effective=_effective(engine, name)
    )


def _effective(engine: EngineDep, name: str) -> dict[str, object]:
    config = engine.config(name)
    drift, concept, analysis = config.drift(), config.concept(), config.analysis()
    anomaly = config.anomaly(engine.settings.anomaly)
    return {
        "drift": {f: getattr(drift, f) for f in drift.__dataclass_fields__},
        "concept": {f: getattr(concept, f) for f in concept.__dataclass_fields__},
        "anomaly": {f: getattr(anomaly, f) for f in anomaly.__dataclass_fields__},
        "analysis": {f: getattr(analysis, f) for f in analysis.__dataclass_fields__},
        "analysis_kpi": config.analysis_kpi,
    }


class ReviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject", "comment"]
    comment: Annotated[str, Field(max_length=4000)] | None = None


@router.post(
    "/models/{name}/versions/{version}/reviews",
    summary="Review a gated version from the dashboard: forwarded to the registry with your token",
    description="The dashboard's Approve and Reject. The monitor checks that the caller is at least a "
    "scientist of the model's team, then forwards the review to the registry's "
    "`POST /v1/models/{name}/versions/{version}/reviews` with the caller's own token: the registry "
    "decides (the gate's approver role, never the registrant) and answers; its answer is returned "
    "as it is. 503 when the registry cannot be reached.",
)
async def review_version(
    name: str,
    version: Annotated[int, Path(ge=1, le=MAX_INT)],
    body: ReviewBody,
    request: Request,
    engine: EngineDep,
    principal: CurrentPrincipal,
) -> JSONResponse:
    if name not in model_names(engine):
        raise NotFound(f"the monitor has seen no model named {name!r}", field="name")
    principal.require(Role.SCIENTIST, engine.team_of(name))
    registry = request.app.state.registry_client
    if registry is None:
        raise Unavailable("this monitor has no registry configured (FLEET_REGISTRY_URL)")
    try:
        status, answer = await registry.review(
            name, version, body.model_dump(), request.headers["authorization"]
        )
    except httpx.HTTPError as exc:
        raise Unavailable(f"the registry cannot be reached to record the review: {exc}") from exc
    media = "application/problem+json" if status >= 400 else "application/json"
    return JSONResponse(answer, status_code=status, media_type=media)
