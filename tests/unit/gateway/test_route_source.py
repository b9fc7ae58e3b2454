"""Routes from the deployer: a late deployer, on-demand re-fetch for a fresh deploy, the service token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Request, Response

from fleet_core.auth import Role, TokenAuthority
from fleet_core.events import RouteArm
from fleet_core.serving import ModelRoute
from fleet_sdk.embedded_broker import free_port
from support.gateway import SECRET, route, running_gateway, snapshot

ROW = {"age": 42, "income": 5100.5, "email": "ada@example.com"}


class FakeDeployer:
    """``GET /v1/routes`` over real HTTP, serving whatever ``models`` holds."""

    def __init__(self) -> None:
        self.models: list[ModelRoute] = []
        self.principals: list[str] = []
        self.port = free_port()
        app = FastAPI()

        @app.get("/v1/routes")
        async def routes(request: Request) -> Response:
            token = request.headers["authorization"].removeprefix("Bearer ")
            principal = TokenAuthority(SECRET).verify(token)
            # The least that reads every route: not admin, so a leaked token can change nothing.
            assert principal.role is Role.VIEWER and principal.teams == ["*"]
            self.principals.append(principal.subject)
            return Response(snapshot(*self.models).model_dump_json(), media_type="application/json")

        self.server = uvicorn.Server(uvicorn.Config(app, port=self.port, log_config=None, lifespan="off"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.01)
        try:
            yield
        finally:
            self.server.should_exit = True
            await task


async def test_gateway_waits_for_a_late_deployer_then_serves_fresh_deploys_on_demand() -> None:
    deployer = FakeDeployer()
    deployer.models = [route("churn", [RouteArm(version=1, weight=100)])]
    async with running_gateway(
        None, deployer_url=deployer.url, routes_resync_s=600, routes_refresh_min_interval_s=0.1
    ) as gw:
        assert (await gw.client.get("/v2/health/ready")).status_code == 503
        async with deployer.running():
            deadline = time.monotonic() + 10
            while (await gw.client.get("/v2/health/ready")).status_code != 200:
                assert time.monotonic() < deadline, "never became ready"
                await asyncio.sleep(0.05)
            r = await gw.client.post("/v2/models/churn/infer", json={"inputs": ROW}, headers=gw.auth())
            assert r.status_code == 200

            # A fresh deploy: the next request that names it makes the gateway re-fetch.
            deployer.models.append(route("fraud", [RouteArm(version=3, weight=100)]))
            await asyncio.sleep(0.15)
            r = await gw.client.post("/v2/models/fraud/infer", json={"inputs": ROW}, headers=gw.auth())
            assert r.status_code == 200, r.text
            assert r.headers["x-fleet-model-version"] == "3"

            # A new version of a known model, named explicitly.
            deployer.models[0] = route(
                "churn", [RouteArm(version=1, weight=100), RouteArm(version=2, weight=0)], revision=2
            )
            await asyncio.sleep(0.15)
            r = await gw.client.post(
                "/v2/models/churn/versions/2/infer", json={"inputs": ROW}, headers=gw.auth()
            )
            assert r.status_code == 200 and r.json()["version"] == 2

            # Unknown names are re-fetched at most once per interval.
            fetches = len(deployer.principals)
            for i in range(5):
                r = await gw.client.post(
                    f"/v2/models/ghost-{i}/infer", json={"inputs": ROW}, headers=gw.auth()
                )
                assert r.status_code == 404
            assert len(deployer.principals) - fetches <= 1
    assert set(deployer.principals) == {"service:gateway"}


async def test_a_route_update_naming_a_version_still_deploying_is_fetched_until_servable() -> None:
    # The deployer publishes a table naming v2 while a snapshot taken just before still lacks it:
    # the gateway keeps re-fetching (past its on-demand rate limit) until it can serve v2.
    from prometheus_client import CollectorRegistry

    from fleet_gateway.metrics import GatewayMetrics
    from fleet_gateway.route_source import DeployerRouteSource
    from fleet_gateway.routing import RouteBook

    deployer = FakeDeployer()
    deployer.models = [route("churn", [RouteArm(version=1, weight=100)])]
    book = RouteBook()
    source = DeployerRouteSource(
        book,
        TokenAuthority(SECRET),
        GatewayMetrics(CollectorRegistry()),
        deployer_url=deployer.url,
        resync_s=600,
        refresh_min_interval_s=0.3,
        timeout_s=2,
    )
    async with deployer.running():
        assert await source.sync()
        table = route(
            "churn",
            [RouteArm(version=1, weight=100), RouteArm(version=2, weight=0, mode="shadow")],
            revision=2,
        ).table
        assert book.apply_table(table)
        assert book.missing_versions("churn") == [2]

        async def deploy_finishes_later() -> None:
            await asyncio.sleep(0.5)
            deployer.models = [route("churn", table.arms, revision=2)]

        finishing = asyncio.create_task(deploy_finishes_later())
        await source.refresh_model("churn")
        await finishing
        assert book.missing_versions("churn") == []
        assert book.served("churn", 2) is not None
    await source.stop()
