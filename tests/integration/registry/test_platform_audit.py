"""One audit log for the platform: a deployer's writes and refusals reach the registry's log over
the broker, next to the registry's own, with who, what, when, where and how it ended."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fleet_core.auth import Role
from fleet_sdk.embedded_broker import EmbeddedBroker
from support.deployer import FakeServingControl, running_deployer
from support.registry import running_registry
from support.registry_double import confirming


async def _audit_until(registry: Any, count: int, **filters: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    items: list[dict[str, Any]] = []
    for _ in range(300):
        items = (await registry.client.get(f"/v1/audit?{query}", headers=registry.auth())).json()["items"]
        if len(items) >= count:
            return items
        await asyncio.sleep(0.1)
    raise AssertionError(f"only {len(items)} audit entries for {filters}: {items}")


async def test_a_deployers_writes_and_refusals_join_the_registrys_audit_log(
    kafka: EmbeddedBroker, tmp_path: Path
) -> None:
    for room in ("registry", "deployer"):
        (tmp_path / room).mkdir()
    async with (
        running_registry(tmp_path / "registry", kafka_bootstrap=kafka.bootstrap) as registry,
        running_deployer(
            tmp_path / "deployer", serving=FakeServingControl(), kafka_bootstrap=kafka.bootstrap
        ) as d,
    ):
        confirming(d)
        await d.register("churn", 1, team="growth")
        dev = d.auth(Role.DEPLOYER, ["growth"], subject="dev")
        r = await d.client.post("/v1/deployments", json={"model": "churn", "version": 1}, headers=dev)
        assert r.status_code == 201, r.text
        outsider = d.auth(Role.DEPLOYER, ["risk"], subject="mallory")
        refused = await d.client.put(
            "/v1/routes/churn", json={"arms": [{"version": 1, "weight": 100}]}, headers=outsider
        )
        assert refused.status_code == 403
        peek = await d.client.get("/v1/routes/churn", headers=d.auth(Role.VIEWER, ["risk"], subject="eve"))
        assert peek.status_code == 403
        # The registry's own refusal lands there too, written directly.
        denied = await registry.client.get(
            "/v1/audit", headers=registry.auth(Role.DEPLOYER, ["*"], subject="ops")
        )
        assert denied.status_code == 403

        entries = await _audit_until(registry, 3, service="deployer")
        by_actor = {e["actor"]: e for e in entries}
        assert by_actor["dev"]["action"] == "POST /v1/deployments"
        assert (by_actor["dev"]["outcome"], by_actor["dev"]["role"]) == ("ok", "deployer")
        assert by_actor["dev"]["request_id"] == r.headers["x-request-id"]
        assert (
            by_actor["mallory"]["action"],
            by_actor["mallory"]["resource"],
            by_actor["mallory"]["outcome"],
        ) == (
            "PUT /v1/routes/{model}",
            "/v1/routes/churn",
            "denied",
        )
        assert by_actor["eve"]["outcome"] == "denied"  # a refused read is audited too
        own = await _audit_until(registry, 1, service="registry", outcome="denied")
        assert (own[0]["actor"], own[0]["action"]) == ("ops", "GET /v1/audit")
        # Successful reads are not writes: nothing for the admin's audit queries themselves.
        assert not [e for e in entries if e["action"].startswith("GET") and e["outcome"] == "ok"]


async def test_the_gateways_refused_calls_join_the_audit_log_and_its_traffic_does_not(
    kafka: EmbeddedBroker, tmp_path: Path
) -> None:
    from fleet_core.events import RouteArm
    from support.gateway import route, running_gateway, snapshot

    (tmp_path / "registry").mkdir()
    routes = snapshot(route("churn", [RouteArm(version=1, weight=100)], team="growth"))
    row = {"age": 42, "income": 5100.5, "email": "ada@example.com"}
    async with (
        running_registry(tmp_path / "registry", kafka_bootstrap=kafka.bootstrap) as registry,
        running_gateway(routes, kafka_bootstrap=kafka.bootstrap) as gw,
    ):
        served = await gw.client.post(
            "/v2/models/churn/infer", json={"inputs": row}, headers=gw.auth(Role.VIEWER, ["growth"], "app")
        )
        assert served.status_code == 200, served.text
        refused = await gw.client.post(
            "/v2/models/churn/infer", json={"inputs": row}, headers=gw.auth(Role.VIEWER, ["risk"], "prober")
        )
        assert refused.status_code == 403
        entries = await _audit_until(registry, 1, service="gateway")
        assert [(e["actor"], e["action"], e["outcome"]) for e in entries] == [
            ("prober", "POST /v2/models/{name}/infer", "denied")
        ]
