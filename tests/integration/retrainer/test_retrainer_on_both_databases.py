"""The retrainer's team column on SQLite and PostgreSQL: migration 0002 upgrades a database that
already holds jobs (those keep no team and are shown only to all-teams principals), new jobs record
their model's team, and a job id PostgreSQL could not even compare (a NUL byte) is a 422."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import text

from fleet_core.auth import Role
from fleet_core.db import Database, alembic_config
from fleet_retrainer.app import MIGRATIONS
from support.retrainer import running_retrainer


async def a_database_at_revision_0001_with_one_job(url: str) -> None:
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(str(MIGRATIONS), c), "0001"))
            await conn.execute(
                text(
                    "INSERT INTO jobs (id, model, trigger, requested_by, state, result, logs, created_at) "
                    "VALUES ('00000000-0000-4000-8000-000000000001', 'credit', 'manual', 'someone', "
                    "'rejected', '{}', '[]', :now)"
                ),
                {"now": datetime(2026, 11, 30, tzinfo=UTC)},
            )
    finally:
        await db.dispose()


async def test_jobs_from_before_the_migration_have_no_team_and_new_ones_have_theirs(
    db_url: str, tmp_path: Path
) -> None:
    await a_database_at_revision_0001_with_one_job(db_url)
    async with running_retrainer(tmp_path, database_url=db_url) as h:
        h.registry.add_champion("credit", "alpha")
        r = await h.client.post(
            "/v1/jobs", json={"model": "credit"}, headers=h.auth(Role.SCIENTIST, ["alpha"])
        )
        assert r.status_code == 202, r.text
        new = await h.finished(r.json()["job"]["id"])
        assert new["team"] == "alpha" and new["state"] == "registered", new

        everyone = {j["id"]: j["team"] for j in await h.all_jobs()}
        assert everyone == {"00000000-0000-4000-8000-000000000001": None, new["id"]: "alpha"}
        alpha = h.auth(Role.VIEWER, ["alpha"])
        assert [j["id"] for j in (await h.client.get("/v1/jobs", headers=alpha)).json()["items"]] == [
            new["id"]
        ]
        legacy = await h.client.get("/v1/jobs/00000000-0000-4000-8000-000000000001", headers=alpha)
        assert legacy.status_code == 403, legacy.text

        for path in ("/v1/jobs/%00", "/v1/jobs/%00/logs"):
            r = await h.client.get(path, headers=h.auth())
            assert r.status_code == 422 and r.json()["field"] == "job_id", r.text
