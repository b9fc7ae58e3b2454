"""A consumer that keeps failing on a poison message moves it to <topic>.dlq and goes on; a message
that is not a valid event goes there at once. Real Tansu broker, FastStream consumer group."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka import ConsumerRecord

from fleet_core.broker import make_broker, subscribe
from fleet_core.events import CloudEvent, RetrainRequested, Topic, make_event
from fleet_sdk.embedded_broker import EmbeddedBroker
from support.kafka import read_topic

pytestmark = pytest.mark.integration

TOPIC = Topic.RETRAIN_REQUESTED
MAX_ATTEMPTS = 3


def retrain(model: str) -> bytes:
    event = make_event(TOPIC, RetrainRequested(model=model, reason="manual", requested_by="t"), source="/t")
    return event.to_bytes()


def wrong_type() -> bytes:
    """A well-formed retrain request whose envelope says it is another topic's event."""
    body = json.loads(retrain("m"))
    body["type"] = Topic.DRIFT_DETECTED.event_type
    return json.dumps(body).encode()


def bad_payload() -> bytes:
    """The right envelope with a payload the contract refuses."""
    body = json.loads(retrain("m"))
    body["data"]["reason"] = "because"
    return json.dumps(body).encode()


def dlq_headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


async def test_poison_message_goes_to_the_dlq_after_retries_and_the_next_message_is_handled(
    kafka: EmbeddedBroker,
) -> None:
    attempts: dict[str, int] = {}
    handled: list[str] = []
    healthy_handled = asyncio.Event()

    async def handler(event: CloudEvent[RetrainRequested]) -> None:
        attempts[event.data.model] = attempts.get(event.data.model, 0) + 1
        if event.data.model == "poison":
            raise RuntimeError("cannot handle this one")
        handled.append(event.data.model)
        healthy_handled.set()

    consumer = make_broker(kafka.bootstrap)
    subscribe(consumer, TOPIC, handler, consumer="dlq-test", max_attempts=MAX_ATTEMPTS, retry_backoff_s=0.01)
    producer = make_broker(kafka.bootstrap)
    await producer.connect()
    await consumer.start()
    try:
        # One partition, in this order: the good message comes after all the bad ones.
        messages = [
            (b"poison", retrain("poison")),
            (b"garbage", b"{not json"),
            (b"wrong-type", wrong_type()),
            (b"bad-payload", bad_payload()),
            (b"healthy", retrain("healthy")),
        ]
        for key, body in messages:
            await producer.publish(body, TOPIC.value, key=key, partition=0)
        await asyncio.wait_for(healthy_handled.wait(), 60)  # includes the ~5 s group join
        dlq = await read_topic(kafka.bootstrap, TOPIC.dlq, expect=4)
    finally:
        await consumer.stop()
        await producer.stop()

    assert handled == ["healthy"]
    assert attempts == {"poison": MAX_ATTEMPTS, "healthy": 1}  # the invalid ones never reach it
    by_key = {r.key: r for r in dlq}
    assert sorted(by_key) == [b"bad-payload", b"garbage", b"poison", b"wrong-type"]
    assert len(dlq) == 4

    poison = dlq_headers(by_key[b"poison"])
    assert poison["fleet-dlq-reason"] == "handler"
    assert poison["fleet-dlq-attempts"] == str(MAX_ATTEMPTS)
    assert poison["fleet-dlq-error"] == "RuntimeError: cannot handle this one"
    assert poison["fleet-dlq-topic"] == TOPIC.value
    assert poison["fleet-dlq-consumer"] == "dlq-test"
    assert poison["fleet-dlq-partition"] == "0"
    assert by_key[b"poison"].value == sent_body(messages, b"poison")  # the bytes as they came

    for key in (b"garbage", b"wrong-type", b"bad-payload"):
        headers = dlq_headers(by_key[key])
        assert headers["fleet-dlq-reason"] == "decode", key
        assert headers["fleet-dlq-attempts"] == "1", key
        assert by_key[key].value == sent_body(messages, key)
    assert "does not belong" in dlq_headers(by_key[b"wrong-type"])["fleet-dlq-error"]
    assert "reason" in dlq_headers(by_key[b"bad-payload"])["fleet-dlq-error"]


def sent_body(messages: list[tuple[bytes, bytes]], key: bytes) -> bytes:
    return dict(messages)[key]
