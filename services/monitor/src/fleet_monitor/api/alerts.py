"""/v1/alerts: the alert lifecycle (firing → resolved), newest first, limited to the caller's teams."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from fleet_core.errors import NotFound
from fleet_monitor.api.deps import AlertId, EngineDep, Limit, Offset, Reader, StoreDep
from fleet_monitor.api.models import visible_models
from fleet_monitor.entities import Alert
from fleet_monitor.views import model_names

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


@router.get(
    "",
    summary="Alerts, newest first, filtered by state, model, team, kind and severity; paged",
    description="Only alerts of models in the caller's teams; naming a model of another team is a 403, "
    "a team filter narrows what the caller sees (never widens it). Page with `limit` and `offset`.",
)
async def list_alerts(
    store: StoreDep,
    engine: EngineDep,
    reader: Reader,
    state: Literal["firing", "resolved"] | None = None,
    model: str | None = None,
    kind: Literal["drift", "anomaly", "rollout"] | None = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    team: Annotated[
        str | None, Query(max_length=100, description="Only alerts of this team's models")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[Alert]:
    if model is not None:
        reader.require(engine.team_of(model))
    models = None if model is not None else visible_models(engine, reader)
    if team is not None:
        models = [
            m for m in (models if models is not None else model_names(engine)) if engine.team_of(m) == team
        ]
    async with store.transaction() as s:
        return await store.alerts(
            s,
            state=state,
            model=model,
            kind=kind,
            severity=severity,
            limit=limit,
            offset=offset,
            models=models,
        )


@router.get("/{alert_id}", summary="One alert (a viewer of its model's team)")
async def get_alert(alert_id: AlertId, store: StoreDep, engine: EngineDep, reader: Reader) -> Alert:
    async with store.transaction() as s:
        alert = await store.alert(s, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id}", field="alert_id")
    reader.require(engine.team_of(alert.model))
    return alert
