"""The gateway's Ray backend calling a real pool deployment through a DeploymentHandle."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from fleet_core.events import RouteArm, RouteTable
from fleet_core.serving import POOL_DEPLOYMENT, ModelRoute, Placement, RoutesSnapshot, ServedVersion
from support.gateway import running_gateway
from support.serving import BuiltModel

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_gateway_serves_a_pool_model_through_its_deployment_handle(
    ray_cluster: str, pool: tuple[str, BuiltModel]
) -> None:
    app, built = pool
    spec = built.spec
    missing = spec.model_copy(update={"version": 2})  # routed, but not configured in the pool
    placement = Placement(kind="pool", app=app, deployment=POOL_DEPLOYMENT)
    routes = RoutesSnapshot(
        models=[
            ModelRoute(
                model=spec.model,
                team=spec.team,
                table=RouteTable(
                    model=spec.model,
                    revision=1,
                    arms=[RouteArm(version=1, weight=100), RouteArm(version=2, weight=0)],
                ),
                versions=[
                    ServedVersion(spec=spec, placement=placement, state="ready"),
                    ServedVersion(spec=missing, placement=placement, state="ready"),
                ],
            )
        ],
        generated_at=datetime.now(UTC),
    )
    async with running_gateway(routes, ray_backend=True, ray_address=ray_cluster) as gw:
        deadline = time.monotonic() + 60
        while (await gw.client.get("/v2/health/ready")).status_code != 200:
            assert time.monotonic() < deadline, (await gw.client.get("/v2/health/ready")).text
            await asyncio.sleep(0.2)
        headers = gw.auth(teams=[spec.team])
        r = await gw.client.post(
            f"/v2/models/{spec.model}/infer", json={"inputs": built.rows(5)}, headers=headers
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-fleet-model-version"] == "1"
        assert r.json()["predictions"] == built.expected(5)

        r = await gw.client.post(
            f"/v2/models/{spec.model}/versions/2/infer", json={"inputs": built.rows(1)}, headers=headers
        )
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert f"{spec.model}:2" in r.json()["detail"]

        # Requests for two pool versions at once share calls to the pool replica (the router now
        # exists, so the gateway places them itself); each is answered on its own: the configured
        # version's rows come back in order, the unconfigured one's requests get their own 503.
        batches = [
            gw.client.post(
                f"/v2/models/{spec.model}/infer", json={"inputs": built.rows(1 + i % 3)}, headers=headers
            )
            for i in range(12)
        ] + [
            gw.client.post(
                f"/v2/models/{spec.model}/versions/2/infer", json={"inputs": built.rows(1)}, headers=headers
            )
            for _ in range(4)
        ]
        answers = await asyncio.gather(*batches)
        for i, r in enumerate(answers[:12]):
            assert r.status_code == 200, r.text
            assert r.json()["predictions"] == built.expected(1 + i % 3)
        assert [r.status_code for r in answers[12:]] == [503] * 4
        text = (await gw.client.get("/metrics")).text
        count = sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("fleet_gateway_batch_models_count")
        )
        total = sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("fleet_gateway_batch_models_sum")
        )
        assert count > 0 and total > count, text  # pool calls were made, and one carried both versions
