"""The gateway's access matrix: every route, against no token, another team, too low a role."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fleet_core.auth import Role
from fleet_core.events import RouteArm
from security.matrix import PUBLIC, SERVICE_ROUTES, TEAM, Access, MatrixRun, listing, team
from support.gateway import AcknowledgedFeedback, GatewayHarness, route, snapshot
from support.repository import gateway_with_deployer

MODEL = f"{TEAM}-churn"
ROW = {"age": 42, "income": 5100.5, "email": "ada@example.com"}


def table(request_id: str) -> dict[tuple[str, str], Access]:
    m = f"/v2/models/{MODEL}"
    infer = {"json": {"inputs": ROW}}
    return {
        **SERVICE_ROUTES,
        # The Open Inference Protocol's server-level endpoints say nothing about any model.
        ("GET", "/v2"): PUBLIC,
        ("GET", "/v2/health/live"): PUBLIC,
        ("GET", "/v2/health/ready"): PUBLIC,
        ("GET", "/v2/models/{name}"): team(Role.VIEWER, m),
        ("GET", "/v2/models/{name}/ready"): team(Role.VIEWER, f"{m}/ready"),
        ("GET", "/v2/models/{name}/versions/{version}"): team(Role.VIEWER, f"{m}/versions/1"),
        ("GET", "/v2/models/{name}/versions/{version}/ready"): team(Role.VIEWER, f"{m}/versions/1/ready"),
        ("POST", "/v2/models/{name}/infer"): team(Role.VIEWER, f"{m}/infer", lambda: infer),
        ("POST", "/v2/models/{name}/versions/{version}/infer"): team(
            Role.VIEWER, f"{m}/versions/1/infer", lambda: infer
        ),
        # What this gateway serves itself (its loaded models and refusals), the caller's teams' only.
        ("GET", "/v1/local-models"): listing(),
        ("POST", "/v1/feedback"): team(
            Role.VIEWER,
            request=lambda: {"json": {"request_id": request_id, "model": MODEL, "labels": [1]}},
        ),
        ("POST", "/v1/outcomes"): team(
            Role.VIEWER,
            request=lambda: {"json": {"model": MODEL, "kpi": "conversion", "value": 1, "routing_key": "u-1"}},
        ),
        # The model repository extension: the deployer decides, with the caller's token. Last, in
        # this order: unload undeploys the model every row above acts on.
        ("POST", "/v2/repository/index"): listing(),
        ("POST", "/v2/repository/models/{name}/load"): team(
            Role.DEPLOYER, f"/v2/repository/models/{MODEL}/load"
        ),
        ("POST", "/v2/repository/models/{name}/unload"): team(
            Role.DEPLOYER, f"/v2/repository/models/{MODEL}/unload"
        ),
    }


async def test_every_gateway_route_checks_role_and_team(tmp_path: Path) -> None:
    routes = snapshot(route(MODEL, [RouteArm(version=1, weight=100)], team=TEAM))
    async with gateway_with_deployer(
        tmp_path, routes=routes, feedback=AcknowledgedFeedback(), local_models_mb=64
    ) as stack:
        gw = stack.gateway
        await stack.deployer.register(MODEL, 1, team=TEAM)
        deployed = await stack.deployer.client.post(
            "/v1/deployments", json={"model": MODEL}, headers=stack.deployer.auth()
        )
        assert deployed.status_code == 201, deployed.text
        served = await gw.client.post(
            f"/v2/models/{MODEL}/infer", json={"inputs": ROW}, headers=gw.auth(Role.ADMIN, ["*"])
        )
        assert served.status_code == 200, served.text
        await _listed_in_local_models(gw)
        run = MatrixRun(gw.client, gw.tokens, table(served.json()["request_id"]), markers=[MODEL])
        await run.run(gw.app)
        assert not run.failures, "\n" + run.report()


async def _listed_in_local_models(gw: GatewayHarness) -> None:
    """A second call has the gateway try to load the model itself; its test artifact does not exist,
    so the model shows among the refusals of ``GET /v1/local-models``: a team resource the listing
    must show the team and hide from others."""
    admin = gw.auth(Role.ADMIN, ["*"])
    await gw.client.post(f"/v2/models/{MODEL}/infer", json={"inputs": ROW}, headers=admin)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while MODEL not in (await gw.client.get("/v1/local-models", headers=admin)).text:
        assert loop.time() < deadline, "the gateway never listed the model among its local models"
        await asyncio.sleep(0.1)
