"""The retrainer store: jobs, policies, and the outbox and inbox."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleet_core.db import Database
from fleet_core.outbox import MessagingStore
from fleet_retrainer.entities import Job, JobSort
from fleet_retrainer.models import MESSAGING, JobRow, PolicyRow
from fleet_retrainer.policy import JobSummary

SOURCE = "/fleet/retrainer"
CONSUMER = "retrainer"
MAX_LOG_LINES = 500


_JOB_ORDER: dict[str, list[Any]] = {
    "created": [JobRow.created_at, JobRow.id],
    "-created": [JobRow.created_at.desc(), JobRow.id],
    "model": [JobRow.model, JobRow.created_at.desc(), JobRow.id],
    "-model": [JobRow.model.desc(), JobRow.created_at.desc(), JobRow.id],
}
"""ORDER BY per sort key, ending on the id so pages never overlap."""


def _now() -> datetime:
    return datetime.now(UTC)


def _job(row: JobRow) -> Job:
    return Job(
        id=row.id,
        model=row.model,
        team=row.team,
        trigger=row.trigger,
        trigger_event_id=row.trigger_event_id,
        requested_by=row.requested_by,
        state=row.state,
        champion_version=row.champion_version,
        source_dataset=row.source_dataset,
        source_dataset_version=row.source_dataset_version,
        new_version=row.new_version,
        result=dict(row.result or {}),
        reason=row.reason,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


class RetrainerStore(MessagingStore):
    def __init__(self, db: Database, *, on_commit: Callable[[], None] | None = None) -> None:
        super().__init__(db, MESSAGING, consumer=CONSUMER, source=SOURCE, on_commit=on_commit)

    # ----------------------------------------------------------------- jobs

    async def add_job(
        self,
        s: AsyncSession,
        *,
        model: str,
        team: str | None,
        trigger: str,
        trigger_event_id: str | None,
        requested_by: str,
        champion_version: int | None,
        state: str,
        reason: str,
        source_dataset: tuple[str, int] | None = None,
    ) -> Job:
        row = JobRow(
            id=str(uuid.uuid4()),
            model=model,
            team=team,
            trigger=trigger,
            trigger_event_id=trigger_event_id,
            requested_by=requested_by,
            state=state,
            champion_version=champion_version,
            source_dataset=source_dataset[0] if source_dataset else None,
            source_dataset_version=source_dataset[1] if source_dataset else None,
            result={},
            logs=[f"{_now().isoformat(timespec='seconds')} {reason}"],
            reason=reason,
            created_at=_now(),
        )
        s.add(row)
        await s.flush()
        return _job(row)

    async def job(self, s: AsyncSession, job_id: str) -> Job | None:
        row = await s.get(JobRow, job_id)
        return _job(row) if row else None

    async def jobs(
        self,
        s: AsyncSession,
        *,
        model: str | None = None,
        state: str | None = None,
        teams: Collection[str] | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Newest first; ``teams`` (None: every team) keeps only jobs of those teams, never a job
        whose team is unknown."""
        query = select(JobRow).order_by(JobRow.created_at.desc())
        if teams is not None:
            query = query.where(JobRow.team.in_(list(teams)))
        if model:
            query = query.where(JobRow.model == model)
        if state:
            query = query.where(JobRow.state == state)
        return [_job(r) for r in (await s.execute(query.limit(limit))).scalars()]

    async def job_page(
        self,
        s: AsyncSession,
        *,
        teams: Collection[str] | None = None,
        team: str | None = None,
        model: str | None = None,
        state: str | None = None,
        sort: JobSort = "-created",
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Job], int]:
        """One page of jobs and how many match; ``teams`` (None: every team) keeps only jobs of
        those teams, never a job whose team is unknown; the other filters combine with it."""
        where: list[Any] = []
        if teams is not None:
            where.append(JobRow.team.in_(list(teams)))
        if team is not None:
            where.append(JobRow.team == team)
        if model:
            where.append(JobRow.model == model)
        if state:
            where.append(JobRow.state == state)
        total = await s.scalar(select(func.count()).select_from(JobRow).where(*where))
        rows = await s.scalars(
            select(JobRow).where(*where).order_by(*_JOB_ORDER[sort]).limit(limit).offset(offset)
        )
        return [_job(r) for r in rows], int(total or 0)

    async def summaries(self, s: AsyncSession, limit: int = 1000) -> list[JobSummary]:
        rows = (await s.execute(select(JobRow).order_by(JobRow.created_at.desc()).limit(limit))).scalars()
        return [JobSummary(r.model, r.state, r.created_at, r.finished_at) for r in rows]

    async def update_job(self, s: AsyncSession, job_id: str, **fields: Any) -> Job:
        row = await s.get(JobRow, job_id)
        if row is None:
            raise LookupError(job_id)
        for key, value in fields.items():
            setattr(row, key, value)
        await s.flush()
        return _job(row)

    async def log(self, s: AsyncSession, job_id: str, line: str) -> None:
        row = await s.get(JobRow, job_id)
        if row is None:
            raise LookupError(job_id)
        row.logs = [*(row.logs or []), f"{_now().isoformat(timespec='seconds')} {line}"][-MAX_LOG_LINES:]

    async def logs(self, s: AsyncSession, job_id: str) -> list[str] | None:
        row = await s.get(JobRow, job_id)
        return list(row.logs or []) if row else None

    # ----------------------------------------------------------------- policies

    async def policy(self, s: AsyncSession, model: str) -> dict[str, Any] | None:
        row = await s.get(PolicyRow, model)
        return dict(row.policy) if row else None

    async def policies(self, s: AsyncSession) -> dict[str, dict[str, Any]]:
        return {r.model: dict(r.policy) for r in (await s.execute(select(PolicyRow))).scalars()}

    async def put_policy(self, s: AsyncSession, model: str, policy: dict[str, Any], *, by: str) -> None:
        row = await s.get(PolicyRow, model)
        if row is None:
            s.add(PolicyRow(model=model, policy=policy, updated_by=by))
        else:
            row.policy, row.updated_by, row.updated_at = policy, by, _now()
