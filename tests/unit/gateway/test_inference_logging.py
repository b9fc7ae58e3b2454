"""Inference logging: batched CloudEvents with PII hashed; a full queue sheds and counts, never fails."""

from __future__ import annotations

import asyncio
import time

import orjson
import structlog

from fleet_core.events import RouteArm, Topic, parse_event
from fleet_gateway.backend import ModelFailed
from support.gateway import CollectingTransport, FakeBackend, route, running_gateway, snapshot

SHADOW = RouteArm(version=2, weight=100, mode="shadow")
ROW = {"age": 42, "income": 5100.5, "email": "ada@example.com"}


async def wait_for(predicate, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_logged_record_hashes_pii_and_carries_the_request() -> None:
    transport = CollectingTransport()
    routes = snapshot(route("churn", [RouteArm(version=1, weight=100)]))
    async with running_gateway(routes, log_transport=transport, pii_salt="pepper") as gw:
        r = await gw.client.post(
            "/v2/models/churn/infer",
            json={"inputs": ROW},
            headers={**gw.auth(subject="ann"), "X-Request-ID": "rid-1", "X-Fleet-Routing-Key": "user-9"},
        )
        assert r.status_code == 200
        await wait_for(lambda: transport.records)
    key, value = transport.records[0]
    assert key == b"churn"
    event = parse_event(Topic.INFERENCE_LOGGED, value)
    logged = event.data
    assert event.requestid == "rid-1" and event.subject == "churn"
    assert logged.request_id == "rid-1" and logged.version == 1 and logged.arm == "primary"
    assert logged.status == "ok" and logged.outputs == [10.0]
    # The routing key is often a user id: hashed like PII (still groups a key's requests), never raw.
    assert logged.routing_key and logged.routing_key.startswith("sha256:")
    assert b"user-9" not in value
    assert logged.inputs[0]["age"] == 42
    assert logged.inputs[0]["email"].startswith("sha256:")
    assert b"ada@example.com" not in value
    assert logged.caller and logged.caller != "ann"


async def test_records_are_sent_in_batches() -> None:
    transport = CollectingTransport()
    routes = snapshot(route("churn", [RouteArm(version=1, weight=100)]))
    async with running_gateway(routes, log_transport=transport, log_linger_ms=200, log_batch_size=50) as gw:
        headers = gw.auth()
        await asyncio.gather(
            *(
                gw.client.post("/v2/models/churn/infer", json={"inputs": ROW}, headers=headers)
                for _ in range(20)
            )
        )
        await wait_for(lambda: len(transport.records) == 20)
    assert len(transport.batches) < 20


async def test_full_queue_sheds_and_counts_without_failing_requests() -> None:
    transport = CollectingTransport(down=True)
    routes = snapshot(route("churn", [RouteArm(version=1, weight=100)]))
    async with running_gateway(routes, log_transport=transport, log_queue_size=5) as gw:
        headers = gw.auth()
        statuses = [
            (
                await gw.client.post("/v2/models/churn/infer", json={"inputs": ROW}, headers=headers)
            ).status_code
            for _ in range(12)
        ]
        assert statuses == [200] * 12
        assert gw.shed_total() == 7
        metrics = (await gw.client.get("/metrics")).text
        assert 'fleet_gateway_inference_logs_shed_total{reason="queue_full"} 7.0' in metrics
        assert (
            'fleet_gateway_requests_total{arm="primary",model="churn",status="200",team="risk",'
            'version="1"} 12.0' in metrics
        )


async def test_shadow_gets_a_copy_whose_failure_never_reaches_the_client() -> None:
    transport = CollectingTransport()
    backend = FakeBackend()
    backend.fail["churn:2"] = RuntimeError("shadow exploded")
    routes = snapshot(
        route("churn", [RouteArm(version=1, weight=100), RouteArm(version=2, weight=100, mode="shadow")])
    )
    async with running_gateway(routes, backend=backend, log_transport=transport) as gw:
        r = await gw.client.post("/v2/models/churn/infer", json={"inputs": ROW}, headers=gw.auth())
        assert r.status_code == 200 and r.json()["version"] == 1
        await wait_for(lambda: len(transport.records) == 2)
    logged = [parse_event(Topic.INFERENCE_LOGGED, v).data for _, v in transport.records]
    by_arm = {rec.arm: rec for rec in logged}
    assert by_arm["primary"].status == "ok"
    assert by_arm["shadow"].version == 2 and by_arm["shadow"].status == "error"
    assert "shadow exploded" in (by_arm["shadow"].error or "")
    assert [k for k, _ in backend.calls] == ["churn:1", "churn:2"]


async def test_a_slow_shadow_does_not_delay_the_answer() -> None:
    backend = FakeBackend(delay_s={"churn:2": 5.0})
    routes = snapshot(
        route("churn", [RouteArm(version=1, weight=100), RouteArm(version=2, weight=100, mode="shadow")])
    )
    async with running_gateway(
        routes, backend=backend, log_transport=CollectingTransport(), shadow_timeout_s=0.2
    ) as gw:
        started = time.monotonic()
        r = await gw.client.post("/v2/models/churn/infer", json={"inputs": ROW}, headers=gw.auth())
        assert r.status_code == 200 and time.monotonic() - started < 1.0
        metrics_seen = False
        deadline = time.monotonic() + 3
        while not metrics_seen and time.monotonic() < deadline:
            metrics_seen = 'arm="shadow",model="churn",status="504"' in (await gw.client.get("/metrics")).text
            await asyncio.sleep(0.05)
        assert metrics_seen


def test_oip_numbers_survive_orjson() -> None:
    assert orjson.loads(orjson.dumps({"x": 1.5})) == {"x": 1.5}


async def test_the_routing_key_is_never_logged_raw() -> None:
    transport = CollectingTransport()
    backend = FakeBackend(fail={"churn:1": ModelFailed("boom")})
    routes = snapshot(route("churn", [RouteArm(version=1, weight=100), SHADOW]))
    with structlog.testing.capture_logs() as logs:
        async with running_gateway(routes, backend=backend, log_transport=transport) as gw:
            r = await gw.client.post(
                "/v2/models/churn/infer",
                json={"inputs": ROW},
                headers={**gw.auth(), "X-Fleet-Routing-Key": "alice@example.com"},
            )
            assert r.status_code == 502
            await gw.app.state.dataplane.drain_shadows()
            await wait_for(lambda: len(transport.records) >= 2)
    assert logs, "the failed prediction is logged"
    assert "alice@example.com" not in repr(logs)
    for _, value in transport.records:
        assert b"alice@example.com" not in value
        assert parse_event(Topic.INFERENCE_LOGGED, value).data.routing_key.startswith("sha256:")
