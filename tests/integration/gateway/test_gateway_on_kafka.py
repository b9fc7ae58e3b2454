"""The gateway against the real (embedded) broker: batched inference logs, shedding while the broker
is away, and route tables that arrive as ``rollout.updated`` events."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer

from fleet_core.broker import ensure_topics
from fleet_core.events import (
    BatchSettings,
    RolloutUpdated,
    RouteArm,
    RouteTable,
    Topic,
    make_event,
    parse_event,
)
from fleet_gateway.inference_log import KafkaLogTransport
from fleet_sdk.embedded_broker import EmbeddedBroker
from support.gateway import route, running_gateway, snapshot
from support.kafka import read_topic

ROW = {"age": 42, "income": 5100.5, "email": "ada@example.com"}


class CountingKafkaTransport(KafkaLogTransport):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.batch_sizes: list[int] = []

    async def send_batch(self, messages: list[tuple[bytes, bytes]]) -> None:
        await super().send_batch(messages)
        self.batch_sizes.append(len(messages))


async def test_inference_logs_arrive_in_batches_with_the_documented_payload(kafka: EmbeddedBroker) -> None:
    transport = CountingKafkaTransport([kafka.bootstrap], linger_ms=100)
    routes = snapshot(route("loans", [RouteArm(version=1, weight=100)]))
    async with running_gateway(
        routes, log_transport=transport, kafka_bootstrap=kafka.bootstrap, log_linger_ms=100
    ) as gw:
        headers = gw.auth()
        responses = await asyncio.gather(
            *(
                gw.client.post(
                    "/v2/models/loans/infer",
                    json={"inputs": ROW},
                    headers={**headers, "X-Request-ID": f"r{i}"},
                )
                for i in range(30)
            )
        )
        assert {r.status_code for r in responses} == {200}
        records = await read_topic(kafka.bootstrap, Topic.INFERENCE_LOGGED.value, expect=30)
    assert len(records) == 30
    assert sum(transport.batch_sizes) == 30 and len(transport.batch_sizes) < 30
    events = [parse_event(Topic.INFERENCE_LOGGED, r.value) for r in records]
    assert {r.key for r in records} == {b"loans"}
    assert {e.data.request_id for e in events} == {f"r{i}" for i in range(30)}
    first = events[0]
    assert first.type == "io.modelfleet.inference.logged.v1" and first.subject == "loans"
    assert first.requestid == first.data.request_id
    logged = first.data
    assert logged.model == "loans" and logged.version == 1 and logged.arm == "primary"
    assert logged.status == "ok" and logged.status_code == 200 and logged.latency_ms >= 0
    assert logged.inputs[0]["email"].startswith("sha256:") and logged.inputs[0]["age"] == 42
    assert len(logged.outputs or []) == 1


async def test_predictions_succeed_while_the_broker_is_away_and_sheds_are_counted(
    kafka: EmbeddedBroker,
) -> None:
    routes = snapshot(route("loans", [RouteArm(version=1, weight=100)]))
    async with running_gateway(
        routes, kafka_bootstrap=kafka.bootstrap, log_queue_size=10, log_batch_size=5, log_linger_ms=10
    ) as gw:
        headers = gw.auth()
        r = await gw.client.post("/v2/models/loans/infer", json={"inputs": ROW}, headers=headers)
        assert r.status_code == 200
        await read_topic(kafka.bootstrap, Topic.INFERENCE_LOGGED.value, expect=1, settle_s=0)
        kafka.stop()
        try:
            started = time.monotonic()
            for _ in range(40):
                r = await gw.client.post("/v2/models/loans/infer", json={"inputs": ROW}, headers=headers)
                assert r.status_code == 200
            assert time.monotonic() - started < 10
            deadline = time.monotonic() + 20
            while gw.shed_total() < 20:
                assert time.monotonic() < deadline, f"shed only {gw.shed_total()}"
                await asyncio.sleep(0.1)
        finally:
            kafka.start()
        metrics = (await gw.client.get("/metrics")).text
        assert "fleet_gateway_inference_logs_shed_total" in metrics


async def test_rollout_updated_on_the_broker_changes_routing(kafka: EmbeddedBroker) -> None:
    routes = snapshot(
        route("loans", [RouteArm(version=1, weight=100), RouteArm(version=2, weight=0)], revision=3)
    )
    async with running_gateway(routes, kafka_bootstrap=kafka.bootstrap, follow_rollouts=True) as gw:
        await asyncio.wait_for(gw.app.state.follower.assigned.wait(), 30)
        headers = gw.auth()
        r = await gw.client.post("/v2/models/loans/infer", json={"inputs": ROW}, headers=headers)
        assert r.headers["x-fleet-model-version"] == "1"

        def update(revision: int, weights: tuple[float, float]) -> bytes:
            table = RouteTable(
                model="loans",
                revision=revision,
                arms=[RouteArm(version=1, weight=weights[0]), RouteArm(version=2, weight=weights[1])],
                batching=BatchSettings(max_rows=1),  # PUT /v1/routes/loans/batching {"max_rows": 1}
            )
            payload = RolloutUpdated(
                rollout_id="ro-1", model="loans", version=2, strategy="direct", phase="promoted", routes=table
            )
            return make_event(Topic.ROLLOUT_UPDATED, payload, source="test").to_bytes()

        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        try:
            # A stale table first (revision 2 < 3): ignored. Then revision 4 moves all traffic.
            await producer.send_and_wait(Topic.ROLLOUT_UPDATED.value, update(2, (0, 100)), key=b"loans")
            await producer.send_and_wait(Topic.ROLLOUT_UPDATED.value, update(4, (0, 100)), key=b"loans")
        finally:
            await producer.stop()
        deadline = time.monotonic() + 20
        while True:
            r = await gw.client.post("/v2/models/loans/infer", json={"inputs": ROW}, headers=headers)
            if r.headers["x-fleet-model-version"] == "2":
                break
            assert time.monotonic() < deadline, "routing never changed"
            await asyncio.sleep(0.1)
        assert gw.app.state.routes.table("loans").revision == 4
        batching = gw.app.state.routes.batching("loans")
        assert batching is not None and batching.max_rows == 1, "the model's batch settings came with it"


async def test_broker_restart_resumes_inference_logging(kafka: EmbeddedBroker) -> None:
    routes = snapshot(route("loans", [RouteArm(version=1, weight=100)]))
    async with running_gateway(routes, kafka_bootstrap=kafka.bootstrap, log_linger_ms=10) as gw:
        headers = gw.auth()
        kafka.stop()
        for _ in range(3):
            assert (
                await gw.client.post("/v2/models/loans/infer", json={"inputs": ROW}, headers=headers)
            ).is_success
        kafka.start()
        await ensure_topics(kafka.bootstrap)
        deadline = time.monotonic() + 40
        while True:
            await gw.client.post(
                "/v2/models/loans/infer", json={"inputs": ROW}, headers={**headers, "X-Request-ID": "after"}
            )
            records = await read_topic(
                kafka.bootstrap, Topic.INFERENCE_LOGGED.value, expect=1, timeout_s=1, settle_s=0
            )
            if any(parse_event(Topic.INFERENCE_LOGGED, r.value).data.request_id == "after" for r in records):
                break
            assert time.monotonic() < deadline, "logging never resumed after the broker came back"
