"""The monitor store: versions with their profiles, route tables, per-model config, alerts, and
the outbox and inbox.

Opening or resolving an alert and the event that announces it commit in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_core.db import Database
from fleet_core.events import ModelRegistered, RolloutUpdated
from fleet_core.outbox import MessagingStore
from fleet_monitor.entities import Alert, AlertDraft
from fleet_monitor.models import MESSAGING, AlertRow, ModelConfigRow, RouteRow, VersionRow

SOURCE = "/fleet/monitor"
CONSUMER = "monitor"


def _now() -> datetime:
    return datetime.now(UTC)


def _alert(row: AlertRow) -> Alert:
    return Alert(
        id=row.id,
        fingerprint=row.fingerprint,
        kind=row.kind,  # type: ignore[arg-type]
        name=row.name,
        model=row.model,
        version=row.version,
        severity=row.severity,  # type: ignore[arg-type]
        state=row.state,  # type: ignore[arg-type]
        summary=row.summary,
        value=row.value,
        details=row.details or {},
        started_at=row.started_at,
        resolved_at=row.resolved_at,
    )


class MonitorStore(MessagingStore):
    def __init__(self, db: Database, *, on_commit: Callable[[], None] | None = None) -> None:
        super().__init__(db, MESSAGING, consumer=CONSUMER, source=SOURCE, on_commit=on_commit)

    # ----------------------------------------------------------------- versions and routes

    async def save_version(self, s: AsyncSession, registered: ModelRegistered) -> None:
        row = (
            await s.execute(
                select(VersionRow).where(
                    VersionRow.model == registered.model, VersionRow.version == registered.version
                )
            )
        ).scalar_one_or_none()
        payload = registered.model_dump(mode="json")
        if row is None:
            s.add(
                VersionRow(
                    model=registered.model,
                    version=registered.version,
                    team=registered.team,
                    registered=payload,
                )
            )
        else:
            row.registered = payload

    async def versions(self, s: AsyncSession) -> list[ModelRegistered]:
        rows = (await s.execute(select(VersionRow).order_by(VersionRow.model, VersionRow.version))).scalars()
        return [ModelRegistered.model_validate(r.registered) for r in rows]

    async def save_route(self, s: AsyncSession, update: RolloutUpdated) -> bool:
        """Keep ``update`` unless a newer revision is already stored; True if kept."""
        row = await s.get(RouteRow, update.model)
        if row is not None and row.revision > update.routes.revision:
            return False
        payload = update.model_dump(mode="json")
        if row is None:
            s.add(RouteRow(model=update.model, revision=update.routes.revision, update=payload))
        else:
            row.revision, row.update, row.updated_at = update.routes.revision, payload, _now()
        return True

    async def routes(self, s: AsyncSession) -> list[RolloutUpdated]:
        rows = (await s.execute(select(RouteRow))).scalars()
        return [RolloutUpdated.model_validate(r.update) for r in rows]

    # ----------------------------------------------------------------- config

    async def configs(self, s: AsyncSession) -> dict[str, dict[str, Any]]:
        rows = (await s.execute(select(ModelConfigRow))).scalars()
        return {r.model: dict(r.config) for r in rows}

    async def put_config(self, s: AsyncSession, model: str, config: dict[str, Any], *, by: str) -> None:
        row = await s.get(ModelConfigRow, model)
        if row is None:
            s.add(ModelConfigRow(model=model, config=config, updated_by=by))
        else:
            row.config, row.updated_at, row.updated_by = config, _now(), by

    # ----------------------------------------------------------------- alerts

    async def open_alert(self, s: AsyncSession, draft: AlertDraft) -> Alert | None:
        """Open an alert unless one with the same fingerprint is already firing."""
        existing = (
            await s.execute(
                select(AlertRow).where(AlertRow.fingerprint == draft.fingerprint, AlertRow.state == "firing")
            )
        ).scalar_one_or_none()
        if existing is not None:
            return None
        row = AlertRow(
            fingerprint=draft.fingerprint,
            kind=draft.kind,
            name=draft.name,
            model=draft.model,
            version=draft.version,
            severity=draft.severity,
            state="firing",
            summary=draft.summary,
            value=draft.value,
            details=draft.details,
            started_at=_now(),
        )
        s.add(row)
        await s.flush()
        return _alert(row)

    async def resolve_alert(
        self, s: AsyncSession, fingerprint: str, *, value: float | None = None
    ) -> Alert | None:
        row = (
            await s.execute(
                select(AlertRow).where(AlertRow.fingerprint == fingerprint, AlertRow.state == "firing")
            )
        ).scalar_one_or_none()
        if row is None:
            return None
        row.state, row.resolved_at = "resolved", _now()
        if value is not None:
            row.details = {**(row.details or {}), "resolved_value": value}
        await s.flush()
        return _alert(row)

    async def firing_counts(self, s: AsyncSession) -> dict[str, int]:
        """Firing alerts per model, in one grouped query (the overview's alert column)."""
        query = (
            select(AlertRow.model, func.count()).where(AlertRow.state == "firing").group_by(AlertRow.model)
        )
        return {model: count for model, count in (await s.execute(query)).all()}

    async def alerts(
        self,
        s: AsyncSession,
        *,
        state: str | None = None,
        model: str | None = None,
        kind: str | None = None,
        severity: str | None = None,
        limit: int = 100,
        offset: int = 0,
        models: Collection[str] | None = None,
    ) -> list[Alert]:
        """Alerts newest first; ``models`` (when given) keeps only alerts of those models."""
        query = select(AlertRow).order_by(AlertRow.started_at.desc(), AlertRow.id.desc())
        if models is not None:
            query = query.where(AlertRow.model.in_(list(models)))
        if state:
            query = query.where(AlertRow.state == state)
        if model:
            query = query.where(AlertRow.model == model)
        if kind:
            query = query.where(AlertRow.kind == kind)
        if severity:
            query = query.where(AlertRow.severity == severity)
        rows = (await s.execute(query.limit(limit).offset(offset))).scalars()
        return [_alert(r) for r in rows]

    async def alert(self, s: AsyncSession, alert_id: int) -> Alert | None:
        row = await s.get(AlertRow, alert_id)
        return _alert(row) if row else None
