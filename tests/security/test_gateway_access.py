"""The gateway's access matrix: every route, against no token, another team, too low a role."""

from __future__ import annotations

from fleet_core.auth import Role
from fleet_core.events import RouteArm
from security.matrix import PUBLIC, SERVICE_ROUTES, TEAM, Access, MatrixRun, team
from support.gateway import AcknowledgedFeedback, route, running_gateway, snapshot

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
        ("POST", "/v1/feedback"): team(
            Role.VIEWER,
            request=lambda: {"json": {"request_id": request_id, "model": MODEL, "labels": [1]}},
        ),
    }


async def test_every_gateway_route_checks_role_and_team() -> None:
    routes = snapshot(route(MODEL, [RouteArm(version=1, weight=100)], team=TEAM))
    async with running_gateway(routes, feedback=AcknowledgedFeedback()) as gw:
        served = await gw.client.post(
            f"/v2/models/{MODEL}/infer", json={"inputs": ROW}, headers=gw.auth(Role.ADMIN, ["*"])
        )
        assert served.status_code == 200, served.text
        run = MatrixRun(gw.client, gw.tokens, table(served.json()["request_id"]), markers=[MODEL])
        await run.run(gw.app)
        assert not run.failures, "\n" + run.report()
