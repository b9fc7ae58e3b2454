"""The deployer store: known versions, deployments, route tables and their history, rollouts,
last-request times, and the outbox and inbox.

Every method works inside a transaction the caller opens with ``transaction()``, so a state change
and the event announcing it commit together. Rows become entities before they leave this module.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_core.db import Database
from fleet_core.events import BatchSettings, RolloutPhase, RouteArm, RouteTable, Strategy
from fleet_core.outbox import MessagingStore
from fleet_core.schemas import ResourceQuota
from fleet_core.serving import DeploymentState, ModelSpec, Placement
from fleet_deployer.entities import (
    Deployment,
    DeploymentFilter,
    DeploymentSort,
    KnownVersion,
    Rollout,
    RolloutFilter,
    RolloutSort,
    RouteHistoryEntry,
)
from fleet_deployer.models import (
    MESSAGING,
    DeploymentRow,
    KnownVersionRow,
    RolloutRow,
    RouteHistoryRow,
    RouteTableRow,
    VersionActivityRow,
)
from fleet_deployer.routing import RouteCause

SOURCE = "/fleet/deployer"
CONSUMER = "deployer"


def _now() -> datetime:
    return datetime.now(UTC)


def _quota(raw: dict[str, Any] | None) -> ResourceQuota | None:
    return ResourceQuota.model_validate(raw) if raw is not None else None


def _dump(quota: ResourceQuota | None) -> dict[str, Any] | None:
    return quota.model_dump(mode="json") if quota is not None else None


def _known(row: KnownVersionRow) -> KnownVersion:
    return KnownVersion(
        spec=ModelSpec.model_validate(row.spec),
        quota=_quota(row.quota),
        deploy_policy=row.deploy_policy,  # type: ignore[arg-type]
        source=row.source,
        created_at=row.created_at,
    )


def _deployment(row: DeploymentRow) -> Deployment:
    return Deployment(
        model=row.model,
        version=row.version,
        team=row.team,
        placement=Placement(kind=row.placement_kind, app=row.app, deployment=row.deployment),  # type: ignore[arg-type]
        quota=_quota(row.quota),
        state=row.state,  # type: ignore[arg-type]
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _rollout(row: RolloutRow) -> Rollout:
    return Rollout(
        id=row.id,
        model=row.model,
        team=row.team,
        version=row.version,
        strategy=row.strategy,  # type: ignore[arg-type]
        phase=row.phase,  # type: ignore[arg-type]
        step=row.step,
        quota=_quota(row.quota),
        requested_by=row.requested_by,
        reason=row.reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        action=(row.request or {}).get("action", "direct"),
        progress=(row.request or {}).get("progress"),
    )


def _table(model: str, revision: int, arms: list[Any], batching: dict[str, Any] | None = None) -> RouteTable:
    return RouteTable(
        model=model,
        revision=revision,
        arms=[RouteArm.model_validate(a) for a in arms],
        batching=BatchSettings.model_validate(batching) if batching is not None else None,
    )


def _current(row: RouteTableRow) -> RouteTable:
    return _table(row.model, row.revision, row.arms, row.batching)


def _visible(column: Any, teams: Iterable[str] | None) -> Any:
    """``teams`` None means every team (admins and ``*`` members)."""
    return True if teams is None else column.in_(list(teams))


IN_CHUNK = 500
"""Values per ``IN (...)`` / ``OR`` list, well under SQLite's bound-parameter limit."""

_ACTIVITY_JOIN = and_(
    VersionActivityRow.model == DeploymentRow.model, VersionActivityRow.version == DeploymentRow.version
)
_SPEC_JOIN = and_(
    KnownVersionRow.model == DeploymentRow.model, KnownVersionRow.version == DeploymentRow.version
)
_BY_NAME = (DeploymentRow.model, DeploymentRow.version)


def _deployment_order(sort: DeploymentSort) -> list[Any]:
    """ORDER BY for a sort key, always ending on (model, version) so pages never overlap."""
    last = VersionActivityRow.last_request_at
    orders: dict[str, list[Any]] = {
        "name": list(_BY_NAME),
        "-name": [c.desc() for c in _BY_NAME],
        "updated": [DeploymentRow.updated_at, *_BY_NAME],
        "-updated": [DeploymentRow.updated_at.desc(), *_BY_NAME],
        # Never requested counts as the oldest request: first going up, last going down.
        "last_request": [last.asc().nulls_first(), *_BY_NAME],
        "-last_request": [last.desc().nulls_last(), *_BY_NAME],
    }
    if sort not in orders:
        raise ValueError(f"the store cannot sort deployments by {sort!r}")
    return orders[sort]


def _deployment_where(where: DeploymentFilter, idle_before: datetime) -> list[Any]:
    clauses = [_visible(DeploymentRow.team, where.teams)]
    if where.team is not None:
        clauses.append(DeploymentRow.team == where.team)
    if where.model is not None:
        clauses.append(DeploymentRow.model == where.model)
    if where.name:
        clauses.append(DeploymentRow.model.contains(where.name.lower(), autoescape=True))
    if where.state is not None:
        clauses.append(DeploymentRow.state == where.state)
    elif not where.include_retired:
        clauses.append(DeploymentRow.state != "retired")
    if where.placement is not None:
        clauses.append(DeploymentRow.placement_kind == where.placement)
    if where.idle is not None:
        # The view's rule: idle when the last request (or, never requested, the last change) is
        # older than the idle window.
        seen = func.coalesce(VersionActivityRow.last_request_at, DeploymentRow.updated_at)
        clauses.append(seen < idle_before if where.idle else seen >= idle_before)
    return clauses


def _rollout_where(where: RolloutFilter) -> list[Any]:
    clauses = [_visible(RolloutRow.team, where.teams)]
    if where.team is not None:
        clauses.append(RolloutRow.team == where.team)
    if where.model is not None:
        clauses.append(RolloutRow.model == where.model)
    if where.phase is not None:
        clauses.append(RolloutRow.phase == where.phase)
    if where.strategy is not None:
        clauses.append(RolloutRow.strategy == where.strategy)
    return clauses


_ROLLOUT_ORDER: dict[str, list[Any]] = {
    "created": [RolloutRow.created_at, RolloutRow.id],
    "-created": [RolloutRow.created_at.desc(), RolloutRow.id],
    "updated": [RolloutRow.updated_at, RolloutRow.id],
    "-updated": [RolloutRow.updated_at.desc(), RolloutRow.id],
    "model": [RolloutRow.model, RolloutRow.created_at.desc(), RolloutRow.id],
    "-model": [RolloutRow.model.desc(), RolloutRow.created_at.desc(), RolloutRow.id],
}


class DeployerStore(MessagingStore):
    """Deployer persistence over one SQLAlchemy database."""

    def __init__(self, db: Database, *, on_commit: Callable[[], None] | None = None) -> None:
        super().__init__(db, MESSAGING, consumer=CONSUMER, source=SOURCE, on_commit=on_commit)

    # ------------------------------------------------------------------ known versions

    async def known(self, s: AsyncSession, model: str, version: int) -> KnownVersion | None:
        row = await s.scalar(
            select(KnownVersionRow).where(KnownVersionRow.model == model, KnownVersionRow.version == version)
        )
        return _known(row) if row else None

    async def latest_known(self, s: AsyncSession, model: str) -> KnownVersion | None:
        row = await s.scalar(
            select(KnownVersionRow)
            .where(KnownVersionRow.model == model)
            .order_by(KnownVersionRow.version.desc())
            .limit(1)
        )
        return _known(row) if row else None

    async def known_numbers(self, s: AsyncSession, model: str) -> set[int]:
        rows = await s.scalars(select(KnownVersionRow.version).where(KnownVersionRow.model == model))
        return set(rows)

    async def specs(self, s: AsyncSession, model: str, versions: Iterable[int]) -> dict[int, ModelSpec]:
        rows = await s.scalars(
            select(KnownVersionRow).where(
                KnownVersionRow.model == model, KnownVersionRow.version.in_(list(versions))
            )
        )
        return {r.version: ModelSpec.model_validate(r.spec) for r in rows}

    async def team_of(self, s: AsyncSession, model: str) -> str | None:
        return await s.scalar(select(KnownVersionRow.team).where(KnownVersionRow.model == model).limit(1))

    async def add_known(self, s: AsyncSession, known: KnownVersion, *, event_id: str | None = None) -> bool:
        """Remember a version; False if it was already known (versions are frozen). One insert that
        does nothing on a conflict: ``model.registered`` and an API call that looked the version up
        in the registry may record the same version at the same moment (a check, then an insert,
        let the second writer fail with a unique-constraint error: CI, 2026-12-03)."""
        dialect = s.bind.dialect.name if s.bind else "sqlite"
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = (
            insert(KnownVersionRow.__table__)
            .values(
                model=known.model,
                version=known.version,
                team=known.team,
                spec=known.spec.model_dump(mode="json"),
                quota=_dump(known.quota),
                deploy_policy=known.deploy_policy,
                source=known.source,
                event_id=event_id,
                created_at=_now(),
            )
            .on_conflict_do_nothing(index_elements=["model", "version"])
        )
        result = await s.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ deployments

    async def deployment(self, s: AsyncSession, model: str, version: int) -> Deployment | None:
        row = await self._deployment_row(s, model, version)
        return _deployment(row) if row else None

    async def _deployment_row(self, s: AsyncSession, model: str, version: int) -> DeploymentRow | None:
        return await s.scalar(
            select(DeploymentRow).where(DeploymentRow.model == model, DeploymentRow.version == version)
        )

    async def deployments(
        self,
        s: AsyncSession,
        *,
        teams: Iterable[str] | None = None,
        model: str | None = None,
        include_retired: bool = False,
    ) -> list[Deployment]:
        query = select(DeploymentRow).where(_visible(DeploymentRow.team, teams))
        if model is not None:
            query = query.where(DeploymentRow.model == model)
        if not include_retired:
            query = query.where(DeploymentRow.state != "retired")
        rows = await s.scalars(query.order_by(DeploymentRow.model, DeploymentRow.version))
        return [_deployment(r) for r in rows]

    async def deployment_page(
        self,
        s: AsyncSession,
        where: DeploymentFilter,
        *,
        idle_before: datetime,
        sort: DeploymentSort = "name",
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[list[tuple[Deployment, datetime | None]], int]:
        """One page of the deployments ``where`` matches, each with its stored last-request time,
        and how many match in all; filtered, sorted and paged in SQL (``limit`` None: every one).
        ``idle_before``: a deployment not requested (or changed) since then is idle."""
        clauses = _deployment_where(where, idle_before)
        joined = select(DeploymentRow).outerjoin(VersionActivityRow, _ACTIVITY_JOIN).where(*clauses)
        total = await s.scalar(select(func.count()).select_from(joined.subquery()))
        query = (
            select(DeploymentRow, VersionActivityRow.last_request_at)
            .outerjoin(VersionActivityRow, _ACTIVITY_JOIN)
            .where(*clauses)
            .order_by(*_deployment_order(sort))
            .offset(offset)
        )
        if limit is not None:
            query = query.limit(limit)
        rows = (await s.execute(query)).all()
        return [(_deployment(row), last) for row, last in rows], int(total or 0)

    async def routed_deployments(
        self, s: AsyncSession, *, teams: Iterable[str] | None = None, model: str | None = None
    ) -> list[tuple[Deployment, ModelSpec]]:
        """Every live (not retired) deployment of a model that has a route table the caller may
        read (or every one of ``model``), with its spec: one query for the whole fleet."""
        query = (
            select(DeploymentRow, KnownVersionRow.spec)
            .join(KnownVersionRow, _SPEC_JOIN)
            .where(DeploymentRow.state != "retired")
            .order_by(*_BY_NAME)
        )
        if model is not None:
            query = query.where(DeploymentRow.model == model, _visible(DeploymentRow.team, teams))
        else:
            query = query.join(RouteTableRow, RouteTableRow.model == DeploymentRow.model).where(
                _visible(RouteTableRow.team, teams)
            )
        rows = (await s.execute(query)).all()
        return [(_deployment(row), ModelSpec.model_validate(spec)) for row, spec in rows]

    async def deployments_at(
        self, s: AsyncSession, keys: Collection[tuple[str, int]]
    ) -> list[tuple[Deployment, ModelSpec]]:
        """The deployments (in any state) at these (model, version) keys, with their specs."""
        found: list[tuple[Deployment, ModelSpec]] = []
        ordered = sorted(keys)
        for start in range(0, len(ordered), IN_CHUNK):
            chunk = ordered[start : start + IN_CHUNK]
            match = or_(*(and_(DeploymentRow.model == m, DeploymentRow.version == v) for m, v in chunk))
            rows = await s.execute(
                select(DeploymentRow, KnownVersionRow.spec).join(KnownVersionRow, _SPEC_JOIN).where(match)
            )
            found.extend((_deployment(row), ModelSpec.model_validate(spec)) for row, spec in rows.all())
        return found

    async def put_deployment(
        self,
        s: AsyncSession,
        *,
        model: str,
        version: int,
        team: str,
        placement: Placement,
        quota: ResourceQuota | None,
        state: DeploymentState,
    ) -> Deployment:
        now = _now()
        row = await self._deployment_row(s, model, version)
        if row is None:
            row = DeploymentRow(model=model, version=version, team=team, created_at=now)
            s.add(row)
        row.placement_kind = placement.kind
        row.app = placement.app
        row.deployment = placement.deployment
        row.quota = _dump(quota)
        row.state = state
        row.error = None
        row.updated_at = now
        await s.flush()
        return _deployment(row)

    async def set_deployment_state(
        self, s: AsyncSession, model: str, version: int, state: DeploymentState, error: str | None = None
    ) -> None:
        await s.execute(
            update(DeploymentRow)
            .where(DeploymentRow.model == model, DeploymentRow.version == version)
            .values(state=state, error=error, updated_at=_now())
        )

    async def pool_specs(self, s: AsyncSession) -> list[ModelSpec]:
        """The specs of every version placed in the shared pool and not retired."""
        rows = await s.execute(
            select(KnownVersionRow.spec)
            .join(
                DeploymentRow,
                (DeploymentRow.model == KnownVersionRow.model)
                & (DeploymentRow.version == KnownVersionRow.version),
            )
            .where(DeploymentRow.placement_kind == "pool", DeploymentRow.state != "retired")
            .order_by(KnownVersionRow.model, KnownVersionRow.version)
        )
        return [ModelSpec.model_validate(spec) for (spec,) in rows]

    # ------------------------------------------------------------------ route tables

    async def route(self, s: AsyncSession, model: str) -> RouteTable | None:
        row = await s.get(RouteTableRow, model)
        return _current(row) if row else None

    async def routes(
        self, s: AsyncSession, *, teams: Iterable[str] | None = None
    ) -> list[tuple[str, RouteTable]]:
        rows = await s.scalars(
            select(RouteTableRow).where(_visible(RouteTableRow.team, teams)).order_by(RouteTableRow.model)
        )
        return [(r.team, _current(r)) for r in rows]

    async def routes_of(self, s: AsyncSession, models: Collection[str]) -> dict[str, RouteTable]:
        """The current route tables of these models (those that have one)."""
        ordered = sorted(models)
        tables: dict[str, RouteTable] = {}
        for start in range(0, len(ordered), IN_CHUNK):
            rows = await s.scalars(
                select(RouteTableRow).where(RouteTableRow.model.in_(ordered[start : start + IN_CHUNK]))
            )
            tables.update({r.model: _current(r) for r in rows})
        return tables

    async def save_route(
        self,
        s: AsyncSession,
        table: RouteTable,
        *,
        team: str,
        cause: RouteCause,
        rollout_id: str | None,
        by: str,
    ) -> None:
        """Make ``table`` current and append it to the history; its revision must be the next one."""
        now = _now()
        arms = [a.model_dump(mode="json") for a in table.arms]
        batching = table.batching.model_dump(mode="json", exclude_none=True) if table.batching else None
        row = await s.get(RouteTableRow, table.model, with_for_update=True)
        if row is None:
            s.add(
                RouteTableRow(
                    model=table.model,
                    team=team,
                    revision=table.revision,
                    arms=arms,
                    batching=batching,
                    updated_at=now,
                )
            )
        else:
            if table.revision != row.revision + 1:
                raise RuntimeError(
                    f"route table of {table.model}: revision {table.revision} after {row.revision}"
                )
            row.revision, row.arms, row.batching, row.updated_at = table.revision, arms, batching, now
        s.add(
            RouteHistoryRow(
                model=table.model,
                revision=table.revision,
                arms=arms,
                cause=cause,
                rollout_id=rollout_id,
                created_at=now,
                created_by=by,
            )
        )
        await s.flush()

    async def route_history(self, s: AsyncSession, model: str) -> list[RouteHistoryEntry]:
        rows = await s.scalars(
            select(RouteHistoryRow).where(RouteHistoryRow.model == model).order_by(RouteHistoryRow.revision)
        )
        return [
            RouteHistoryEntry(
                table=_table(r.model, r.revision, r.arms),
                cause=r.cause,  # type: ignore[arg-type]
                rollout_id=r.rollout_id,
                created_at=r.created_at,
                created_by=r.created_by,
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ rollouts

    async def add_rollout(
        self,
        s: AsyncSession,
        *,
        rollout_id: str,
        model: str,
        team: str,
        version: int,
        strategy: Strategy,
        phase: RolloutPhase,
        requested_by: str,
        reason: str | None,
        quota: ResourceQuota | None = None,
        request: dict[str, Any] | None = None,
        event_id: str | None = None,
        step: int = 0,
    ) -> Rollout:
        now = _now()
        row = RolloutRow(
            id=rollout_id,
            model=model,
            team=team,
            version=version,
            strategy=strategy,
            phase=phase,
            step=step,
            quota=_dump(quota),
            request=request or {},
            requested_by=requested_by,
            reason=reason,
            event_id=event_id,
            created_at=now,
            updated_at=now,
            finished_at=now if phase not in ("pending", "progressing", "paused") else None,
        )
        s.add(row)
        await s.flush()
        return _rollout(row)

    async def set_rollout_phase(
        self,
        s: AsyncSession,
        rollout_id: str,
        phase: RolloutPhase,
        *,
        step: int | None = None,
        reason: str | None,
    ) -> Rollout:
        row = await s.get(RolloutRow, rollout_id)
        if row is None:
            raise LookupError(rollout_id)
        now = _now()
        row.phase, row.reason, row.updated_at = phase, reason, now
        if step is not None:
            row.step = step
        if phase not in ("pending", "progressing", "paused"):
            row.finished_at = now
        await s.flush()
        return _rollout(row)

    async def rollout_by_event(self, s: AsyncSession, event_id: str) -> Rollout | None:
        row = await s.scalar(select(RolloutRow).where(RolloutRow.event_id == event_id).limit(1))
        return _rollout(row) if row else None

    async def rollout_request(self, s: AsyncSession, rollout_id: str) -> dict[str, Any]:
        row = await s.get(RolloutRow, rollout_id)
        return dict(row.request or {}) if row else {}

    async def rollout(self, s: AsyncSession, rollout_id: str) -> Rollout | None:
        row = await s.get(RolloutRow, rollout_id)
        return _rollout(row) if row else None

    async def rollouts(
        self,
        s: AsyncSession,
        where: RolloutFilter,
        *,
        sort: RolloutSort = "-created",
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Rollout], int]:
        clauses = _rollout_where(where)
        total = await s.scalar(select(func.count()).select_from(RolloutRow).where(*clauses))
        rows = await s.scalars(
            select(RolloutRow).where(*clauses).order_by(*_ROLLOUT_ORDER[sort]).limit(limit).offset(offset)
        )
        return [_rollout(r) for r in rows], int(total or 0)

    async def unfinished_rollouts(self, s: AsyncSession) -> list[Rollout]:
        """Rollouts still pending, progressing or paused, oldest first."""
        rows = await s.scalars(
            select(RolloutRow)
            .where(RolloutRow.phase.in_(["pending", "progressing", "paused"]))
            .order_by(RolloutRow.created_at)
        )
        return [_rollout(r) for r in rows]

    async def has_rollout_of(self, s: AsyncSession, model: str, version: int) -> bool:
        """Whether any rollout (of any phase) was ever started for this version."""
        found = await s.scalar(
            select(RolloutRow.id).where(RolloutRow.model == model, RolloutRow.version == version).limit(1)
        )
        return found is not None

    async def active_rollout(self, s: AsyncSession, model: str) -> Rollout | None:
        """The model's progressive rollout that is under way (progressing or paused), if any."""
        rows = await s.scalars(
            select(RolloutRow)
            .where(
                RolloutRow.model == model,
                RolloutRow.phase.in_(["progressing", "paused"]),
                RolloutRow.strategy.in_(["canary", "ab", "shadow", "blue_green"]),
            )
            .order_by(RolloutRow.created_at.desc())
        )
        # A rollout without progress never started its strategy (or predates it): not under way.
        return next((r for r in map(_rollout, rows) if r.progress is not None), None)

    async def set_rollout_progress(self, s: AsyncSession, rollout_id: str, progress: dict[str, Any]) -> None:
        row = await s.get(RolloutRow, rollout_id)
        if row is None:
            raise LookupError(rollout_id)
        row.request = {**(row.request or {}), "progress": progress}
        row.updated_at = _now()
        await s.flush()

    # ------------------------------------------------------------------ activity

    async def record_activity(self, s: AsyncSession, seen: Mapping[tuple[str, int], datetime]) -> None:
        """Upsert last-request times, never moving one backwards."""
        if not seen:
            return
        dialect = s.bind.dialect.name if s.bind else "sqlite"
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        table = VersionActivityRow.__table__
        for (model, version), at in seen.items():
            stmt = insert(table).values(model=model, version=version, last_request_at=at)
            stmt = stmt.on_conflict_do_update(
                index_elements=["model", "version"],
                set_={"last_request_at": func.max(table.c.last_request_at, stmt.excluded.last_request_at)}
                if dialect != "postgresql"
                else {
                    "last_request_at": func.greatest(table.c.last_request_at, stmt.excluded.last_request_at)
                },
            )
            await s.execute(stmt)
