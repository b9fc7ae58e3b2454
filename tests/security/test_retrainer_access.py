"""The retrainer's access matrix: every route, against no token, another team, too low a role."""

from __future__ import annotations

from pathlib import Path

from fleet_core.auth import Role
from security.matrix import SERVICE_ROUTES, TEAM, Access, MatrixRun, listing, team
from support.retrainer import running_retrainer

MODEL = f"{TEAM}-churn"


def table(job_id: str) -> dict[tuple[str, str], Access]:
    return {
        **SERVICE_ROUTES,
        ("GET", "/v1/jobs"): listing(),
        ("GET", "/v1/jobs/{job_id}"): team(Role.VIEWER, f"/v1/jobs/{job_id}"),
        ("GET", "/v1/jobs/{job_id}/logs"): team(Role.VIEWER, f"/v1/jobs/{job_id}/logs"),
        ("GET", "/v1/policies/{model}"): team(Role.VIEWER, f"/v1/policies/{MODEL}"),
        ("PUT", "/v1/policies/{model}"): team(
            Role.DEPLOYER, f"/v1/policies/{MODEL}", lambda: {"json": {"cooldown_s": 600}}
        ),
        ("POST", "/v1/jobs"): team(Role.SCIENTIST, request=lambda: {"json": {"model": MODEL}}),
    }


async def test_every_retrainer_route_checks_role_and_team(tmp_path: Path) -> None:
    async with running_retrainer(tmp_path) as retrainer:
        retrainer.registry.add_champion(MODEL, TEAM)
        store = retrainer.controller.store
        async with store.transaction() as s:
            job = await store.add_job(
                s,
                model=MODEL,
                team=TEAM,
                trigger="manual",
                trigger_event_id=None,
                requested_by="someone",
                champion_version=1,
                state="rejected",
                reason="seeded",
            )
        run = MatrixRun(retrainer.client, retrainer.tokens, table(job.id), markers=[MODEL])
        await run.run(retrainer.app)
        assert not run.failures, "\n" + run.report()
