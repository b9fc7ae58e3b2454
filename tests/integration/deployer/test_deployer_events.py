"""The deployer on the real broker: ``model.registered`` with policy direct leads to a
``rollout.updated`` carrying a 100 % route table; poison messages go to the dead-letter topics."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet_core.events import RolloutRequested, Topic, make_event, parse_event
from fleet_sdk.embedded_broker import EmbeddedBroker, free_port
from support.deployer import FakeServingControl, registered, running_deployer, wait_ready
from support.kafka import read_topic

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
        from fleet_core.broker import make_broker

        producer = make_broker(kafka.bootstrap)
        await producer.connect()
        try:
            event = make_event(
                Topic.MODEL_REGISTERED, registered("churn", 1, deploy_policy="direct"), source="/t"
            )
            await producer.publish(b"{not an event", Topic.MODEL_REGISTERED.value, key=b"garbage")
            await producer.publish(event.to_bytes(), Topic.MODEL_REGISTERED.value, key=b"churn")
            # A version neither the deployer nor the (unreachable) registry can produce: the handler
            # fails every attempt, so the request lands on the DLQ and the consumer goes on.
            unknown = RolloutRequested(model="ghost", version=3, requested_by="bob")
            await producer.publish(
                make_event(Topic.ROLLOUT_REQUESTED, unknown, source="/t").to_bytes(),
                Topic.ROLLOUT_REQUESTED.value,
                key=b"ghost",
            )
            updates = await read_topic(kafka.bootstrap, Topic.ROLLOUT_UPDATED.value, expect=1, timeout_s=90)
            registered_dlq = await read_topic(
                kafka.bootstrap, Topic.MODEL_REGISTERED.dlq, expect=1, timeout_s=60
            )
            requested_dlq = await read_topic(
                kafka.bootstrap, Topic.ROLLOUT_REQUESTED.dlq, expect=1, timeout_s=60
            )
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
    }
    assert updates[0].key == b"churn"
    assert [r.key for r in registered_dlq] == [b"garbage"]
    assert dict(registered_dlq[0].headers)["fleet-dlq-reason"] == b"decode"
    assert [r.key for r in requested_dlq] == [b"ghost"]
    headers = {k: v.decode() for k, v in requested_dlq[0].headers}
    assert (headers["fleet-dlq-reason"], headers["fleet-dlq-attempts"]) == ("handler", "2")
    assert "registry cannot be reached" in headers["fleet-dlq-error"]
