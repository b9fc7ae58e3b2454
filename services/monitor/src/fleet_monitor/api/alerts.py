"""/v1/alerts: the alert lifecycle (firing → resolved), newest first."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from fleet_core.errors import NotFound
from fleet_monitor.api.deps import Limit, Offset, Reader, StoreDep
from fleet_monitor.entities import Alert

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


@router.get("", summary="Alerts, newest first, filtered by state, model and kind")
async def list_alerts(
    store: StoreDep,
    _: Reader,
    state: Literal["firing", "resolved"] | None = None,
    model: str | None = None,
    kind: Literal["drift", "anomaly", "rollout"] | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[Alert]:
    async with store.transaction() as s:
        return await store.alerts(s, state=state, model=model, kind=kind, limit=limit, offset=offset)


@router.get("/{alert_id}", summary="One alert")
async def get_alert(alert_id: int, store: StoreDep, _: Reader) -> Alert:
    async with store.transaction() as s:
        alert = await store.alert(s, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id}", field="alert_id")
    return alert
