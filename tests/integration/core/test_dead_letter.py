"""A consumer that keeps failing on a poison message moves it to <topic>.dlq and goes on."""

from __future__ import annotations

import asyncio

import pytest

from fleet_core.broker import make_broker, subscribe
from fleet_core.events import CloudEvent, RetrainRequested, Topic, make_event
from fleet_sdk.embedded_broker import EmbeddedBroker
from support.kafka import read_topic

pytestmark = pytest.mark.integration


async def test_poison_message_goes_to_the_dlq_after_retries_and_the_next_message_is_handled(
    kafka: EmbeddedBroker,
) -> None:
    handled: list[str] = []
    done = asyncio.Event()
    attempts: dict[str, int] = {}

    async def handler(event: CloudEvent[RetrainRequested]) -> None:
        attempts[event.data.model] = attempts.get(event.data.model, 0) + 1
        if event.data.model == "poison":
            raise RuntimeError("cannot handle this one")
        handled.append(event.data.model)
        done.set()

    broker = make_broker(kafka.bootstrap)
    subscribe(
        broker, Topic.RETRAIN_REQUESTED, handler, consumer="dlq-test", max_attempts=3, retry_backoff_s=0.01
    )
    producer = make_broker(kafka.bootstrap)
    await producer.connect()
    await broker.start()
    try:
        for model in ("poison", "healthy"):
            event = make_event(
                Topic.RETRAIN_REQUESTED,
                RetrainRequested(model=model, reason="manual", requested_by="t"),
                source="/t",
            )
            await producer.publish(event.to_bytes(), Topic.RETRAIN_REQUESTED.value, key=model.encode())
        await producer.publish(b"{not json", Topic.RETRAIN_REQUESTED.value, key=b"garbage")
        await asyncio.wait_for(done.wait(), 40)
        dlq = await read_topic(kafka.bootstrap, Topic.RETRAIN_REQUESTED.dlq, expect=2)
    finally:
        await broker.stop()
        await producer.stop()

    assert handled == ["healthy"]
    assert attempts["poison"] == 3
    by_key = {r.key: {k: v.decode() for k, v in r.headers} for r in dlq}
    assert set(by_key) == {b"poison", b"garbage"}
    assert by_key[b"poison"]["fleet-dlq-reason"] == "handler"
    assert by_key[b"poison"]["fleet-dlq-attempts"] == "3"
    assert "cannot handle this one" in by_key[b"poison"]["fleet-dlq-error"]
    assert by_key[b"garbage"]["fleet-dlq-reason"] == "decode"
    assert by_key[b"garbage"]["fleet-dlq-topic"] == Topic.RETRAIN_REQUESTED.value
