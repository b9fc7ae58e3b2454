"""The deployer's access matrix: every route, against no token, another team, too low a role."""

from __future__ import annotations

from pathlib import Path

from fleet_core.auth import Role
from security.matrix import SERVICE_ROUTES, TEAM, Access, MatrixRun, listing, team
from support.deployer import FakeServingControl, running_deployer
from support.registry_double import confirming

MODEL = f"{TEAM}-churn"


def table(rollout_id: str) -> dict[tuple[str, str], Access]:
    return {
        **SERVICE_ROUTES,
        ("GET", "/v1/deployments"): listing(),
        ("GET", "/v1/deployments/{model}"): team(Role.VIEWER, f"/v1/deployments/{MODEL}"),
        ("GET", "/v1/rollouts"): listing(),
        ("GET", "/v1/rollouts/{rollout_id}"): team(Role.VIEWER, f"/v1/rollouts/{rollout_id}"),
        ("GET", "/v1/routes"): listing(),
        ("GET", "/v1/pool"): listing(),
        ("GET", "/v1/routes/{model}"): team(Role.VIEWER, f"/v1/routes/{MODEL}"),
        ("POST", "/v1/deployments"): team(
            Role.DEPLOYER, request=lambda: {"json": {"model": MODEL, "version": 1}}
        ),
        ("POST", "/v1/rollouts"): team(
            Role.DEPLOYER, request=lambda: {"json": {"model": MODEL, "version": 2, "strategy": "shadow"}}
        ),
        ("POST", "/v1/rollouts/{rollout_id}/{command}"): team(
            Role.DEPLOYER, f"/v1/rollouts/{rollout_id}/pause"
        ),
        ("PUT", "/v1/routes/{model}"): team(
            Role.DEPLOYER, f"/v1/routes/{MODEL}", lambda: {"json": {"arms": [{"version": 1, "weight": 100}]}}
        ),
        ("PUT", "/v1/routes/{model}/batching"): team(
            Role.DEPLOYER, f"/v1/routes/{MODEL}/batching", lambda: {"json": {"max_rows": 8}}
        ),
        ("DELETE", "/v1/routes/{model}/batching"): team(Role.DEPLOYER, f"/v1/routes/{MODEL}/batching"),
        ("POST", "/v1/models/{model}/rollback"): team(Role.DEPLOYER, f"/v1/models/{MODEL}/rollback"),
        ("DELETE", "/v1/deployments/{model}/{version}"): team(Role.DEPLOYER, f"/v1/deployments/{MODEL}/3"),
        # Last: it undeploys the model every row above acts on.
        ("DELETE", "/v1/deployments/{model}"): team(Role.DEPLOYER, f"/v1/deployments/{MODEL}"),
    }


async def test_every_deployer_route_checks_role_and_team(tmp_path: Path) -> None:
    async with running_deployer(tmp_path, serving=FakeServingControl()) as deployer:
        confirming(deployer)
        for version in (1, 2, 3):
            await deployer.register(MODEL, version, team=TEAM)
        root = deployer.auth()
        for version in (3, 1):
            r = await deployer.client.post(
                "/v1/deployments", json={"model": MODEL, "version": version}, headers=root
            )
            assert r.status_code == 201, r.text
        r = await deployer.client.post(
            "/v1/rollouts", json={"model": MODEL, "version": 2, "strategy": "canary"}, headers=root
        )
        assert r.status_code in (200, 201, 202), r.text
        run = MatrixRun(deployer.client, deployer.tokens, table(r.json()["id"]), markers=[MODEL])
        await run.run(deployer.app)
        assert not run.failures, "\n" + run.report()
