"""Routes from the deployer: a late deployer, on-demand look-ups for a fresh deploy, the service token."""

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
        self.lookups: list[str] = []
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

        @app.get("/v1/routes/{model}")
        async def one_route(model: str, request: Request) -> Response:
            token = request.headers["authorization"].removeprefix("Bearer ")
            principal = TokenAuthority(SECRET).verify(token)
            assert principal.role is Role.VIEWER and principal.teams == ["*"]
            self.principals.append(principal.subject)
            self.lookups.append(model)
            found = next((m for m in self.models if m.model == model), None)
            if found is None:
                return Response('{"status": 404}', status_code=404, media_type="application/problem+json")
            return Response(found.model_dump_json(), media_type="application/json")

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

            # A name the deployer does not know is looked up at most once per interval.
            before = len(deployer.lookups)
            for _ in range(5):
                r = await gw.client.post("/v2/models/ghost/infer", json={"inputs": ROW}, headers=gw.auth())
                assert r.status_code == 404
            assert deployer.lookups[before:] == ["ghost"]
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


async def test_a_model_made_ready_a_moment_ago_is_served_not_404() -> None:
    # The gateway has just fetched everything; the deployer then reports 100 new models ready. The
    # very next request for each is answered: the gateway looks that one model up, with no wait
    # for a rate-limit interval or the periodic re-sync (10 minutes here).
    deployer = FakeDeployer()
    deployer.models = [route("churn", [RouteArm(version=1, weight=100)])]
    async with (
        deployer.running(),
        running_gateway(
            None, deployer_url=deployer.url, routes_resync_s=600, routes_refresh_min_interval_s=60
        ) as gw,
    ):
        deadline = time.monotonic() + 10
        while (await gw.client.get("/v2/health/ready")).status_code != 200:
            assert time.monotonic() < deadline, "never became ready"
            await asyncio.sleep(0.05)
        deployer.models += [route(f"fresh-{i}", [RouteArm(version=1, weight=100)]) for i in range(100)]
        answers = await asyncio.gather(
            *(
                gw.client.post(f"/v2/models/fresh-{i}/infer", json={"inputs": ROW}, headers=gw.auth())
                for i in range(100)
            )
        )
        assert [r.status_code for r in answers] == [200] * 100
        assert sorted(deployer.lookups) == sorted(f"fresh-{i}" for i in range(100))


async def test_lookups_of_unknown_names_are_bounded_over_all_names() -> None:
    from prometheus_client import CollectorRegistry

    from fleet_gateway.metrics import GatewayMetrics
    from fleet_gateway.route_source import DeployerRouteSource
    from fleet_gateway.routing import RouteBook

    deployer = FakeDeployer()
    source = DeployerRouteSource(
        RouteBook(),
        TokenAuthority(SECRET),
        GatewayMetrics(CollectorRegistry()),
        deployer_url=deployer.url,
        resync_s=600,
        refresh_min_interval_s=60,
        timeout_s=2,
        unknown_lookups_per_s=10,
    )
    async with deployer.running():
        found = await asyncio.gather(*(source.lookup(f"probe-{i}") for i in range(200)))
    await source.stop()
    assert not any(found)
    # The burst (ten seconds' worth) and what refills while probing; not the 200 names.
    assert len(deployer.lookups) <= 100 + 20


async def test_model_readiness_asks_the_deployer_when_the_book_says_deploying() -> None:
    # The book learned the version while it was deploying; it became ready since, with no change
    # of route (so no rollout.updated). The readiness probe looks it up instead of answering 503
    # until the periodic re-sync (10 minutes here).
    deployer = FakeDeployer()
    deploying = route("churn", [RouteArm(version=1, weight=100)])
    deploying.versions[0].state = "deploying"
    deployer.models = [deploying]
    async with (
        deployer.running(),
        running_gateway(
            None, deployer_url=deployer.url, routes_resync_s=600, routes_refresh_min_interval_s=0.1
        ) as gw,
    ):
        deadline = time.monotonic() + 10
        while (await gw.client.get("/v2/health/ready")).status_code != 200:
            assert time.monotonic() < deadline, "never became ready"
            await asyncio.sleep(0.05)
        assert (await gw.client.get("/v2/models/churn/ready", headers=gw.auth())).status_code == 503
        deployer.models = [route("churn", [RouteArm(version=1, weight=100)])]  # now ready
        r = await gw.client.get("/v2/models/churn/ready", headers=gw.auth())
        assert r.status_code == 200, r.text
        assert r.json() == {"name": "churn", "ready": True}
