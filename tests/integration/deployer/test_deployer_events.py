"""The deployer on the real broker: ``model.registered`` with policy direct (confirmed by the
registry) leads to a ``rollout.updated`` carrying a 100 % route table; poison messages, events the
registry contradicts and ``rollout.requested`` without a valid token go to the dead-letter topics."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet_core.auth import Role
from fleet_core.events import RolloutRequested, Topic, make_event, parse_event
from fleet_sdk.embedded_broker import EmbeddedBroker, free_port
from support.deployer import FakeServingControl, registered, running_deployer, wait_ready
from support.kafka import read_topic
from support.registry_double import RegistryDouble

pytestmark = pytest.mark.integration


async def test_direct_registration_publishes_a_full_route_table_and_poison_goes_to_the_dlq(
    kafka: EmbeddedBroker, tmp_path: Path
) -> None:
    serving = FakeServingControl()
    async with running_deployer(
        tmp_path,
        serving=serving,
        kafka_bootstrap=kafka.bootstrap,
        consume_events=True,
        dlq_max_attempts=2,
        registry_url=f"http://127.0.0.1:{free_port()}",  # nobody listens: lookups fail
    ) as d:
        await wait_ready(d.client, timeout_s=60)
        registry = RegistryDouble()
        d.controller.registry = registry
        registry.add(registered("churn", 1, deploy_policy="direct"))
        registry.add(registered("churn", 2))
        from fleet_core.broker import make_broker

        producer = make_broker(kafka.bootstrap)
        await producer.connect()
        try:
            event = make_event(
                Topic.MODEL_REGISTERED, registered("churn", 1, deploy_policy="direct"), source="/t"
            )
            await producer.publish(b"{not an event", Topic.MODEL_REGISTERED.value, key=b"garbage")
            await producer.publish(event.to_bytes(), Topic.MODEL_REGISTERED.value, key=b"churn")
            forged = make_event(
                Topic.MODEL_REGISTERED, registered("churn", 2, deploy_policy="direct"), source="/t"
            )
            await producer.publish(forged.to_bytes(), Topic.MODEL_REGISTERED.value, key=b"forged")
            # A version neither the deployer nor the (unreachable) registry can produce: the handler
            # fails every attempt, so the request lands on the DLQ and the consumer goes on.
            bob, _, _ = d.tokens.issue("bob", Role.DEPLOYER, ["*"])
            unknown = RolloutRequested(model="ghost", version=3, requested_by="bob")
            await producer.publish(
                make_event(Topic.ROLLOUT_REQUESTED, unknown, source="/t", auth=bob).to_bytes(),
                Topic.ROLLOUT_REQUESTED.value,
                key=b"ghost",
            )
            # A request with no token, even one that says it comes from the registry, is not acted on.
            tokenless = RolloutRequested(model="churn", version=2, requested_by="service:registry")
            await producer.publish(
                make_event(Topic.ROLLOUT_REQUESTED, tokenless, source="/fleet/registry").to_bytes(),
                Topic.ROLLOUT_REQUESTED.value,
                key=b"tokenless",
            )
            updates = await read_topic(kafka.bootstrap, Topic.ROLLOUT_UPDATED.value, expect=1, timeout_s=90)
            registered_dlq = await read_topic(
                kafka.bootstrap, Topic.MODEL_REGISTERED.dlq, expect=2, timeout_s=60
            )
            requested_dlq = await read_topic(
                kafka.bootstrap, Topic.ROLLOUT_REQUESTED.dlq, expect=2, timeout_s=60
            )
            route = (await d.client.get("/v1/routes/churn", headers=d.auth())).json()["table"]
        finally:
            await producer.stop()

    assert len(updates) == 1
    update = parse_event(Topic.ROLLOUT_UPDATED, updates[0].value)
    assert update.data.phase == "promoted"
    assert update.data.routes.model_dump() == {
        "model": "churn",
        "revision": 1,
        "arms": [
            {"version": 1, "weight": 100.0, "mode": "primary", "sticky": False, "deployment": "fleet-pool"}
        ],
        "batching": None,
    }
    assert updates[0].key == b"churn"
    dead = {r.key: dict(r.headers) for r in registered_dlq}  # keys land on different partitions
    assert set(dead) == {b"garbage", b"forged"}
    assert dead[b"garbage"]["fleet-dlq-reason"] == b"decode"
    forged_error = dead[b"forged"]["fleet-dlq-error"].decode()
    assert "contradicts the registry on deploy_policy" in forged_error
    assert [a["version"] for a in route["arms"]] == [1], (
        "neither the forged event nor the tokenless request moved traffic"
    )
    refusals = {r.key: {k: v.decode() for k, v in r.headers} for r in requested_dlq}
    assert set(refusals) == {b"ghost", b"tokenless"}
    headers = refusals[b"ghost"]
    assert (headers["fleet-dlq-reason"], headers["fleet-dlq-attempts"]) == ("handler", "2")
    assert "does not exist" in headers["fleet-dlq-error"]
    refused = refusals[b"tokenless"]
    assert "Unauthorized" in refused["fleet-dlq-error"] and "fleetauth" in refused["fleet-dlq-error"]
