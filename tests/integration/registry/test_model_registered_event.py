"""Registering a version publishes exactly one documented `model.registered` event through the
outbox, keyed by model name, and a broker outage delays it but never loses or duplicates it."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleet_core.broker import ensure_topics
from fleet_core.events import Topic, parse_event
from fleet_core.schemas import Signature
from fleet_sdk.embedded_broker import EmbeddedBroker
from support.kafka import read_topic
from support.registry import SIGNATURE, RegistryHarness, running_registry, skops_model, upload_version

pytestmark = pytest.mark.integration

TOPIC = Topic.MODEL_REGISTERED


async def test_registering_a_version_publishes_exactly_one_documented_event(
    kafka: EmbeddedBroker, tmp_path: Path
) -> None:
    async with running_registry(tmp_path, kafka_bootstrap=kafka.bootstrap) as h:
        alice = h.auth(subject="alice")
        await h.client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=alice)
        artifact = skops_model()
        r = await upload_version(h, "churn", {**alice, "X-Request-ID": "req-42"}, artifact=artifact)
        assert r.status_code == 201, r.text
        version = r.json()
        records = await read_topic(kafka.bootstrap, TOPIC.value, expect=1)

    assert len(records) == 1, [rec.value for rec in records]
    record = records[0]
    assert record.key == b"churn"  # one model's events stay ordered on one partition
    assert dict(record.headers)["content-type"].startswith(b"application/cloudevents+json")

    event = parse_event(TOPIC, record.value)
    assert event.specversion == "1.0"
    assert event.id == version["event_id"]
    assert event.type == "io.modelfleet.model.registered.v1"
    assert event.source == "/fleet/registry"
    assert event.subject == "churn"
    assert event.datacontenttype == "application/json"
    assert event.dataschema == "https://modelfleet.dev/schemas/model.registered/v1"
    assert event.requestid == "req-42"  # the HTTP request id travels into the event
    assert datetime.now(UTC) - event.time < timedelta(minutes=1)

    data = event.data
    assert (data.model, data.version, data.team) == ("churn", 1, "growth")
    assert (data.flavor, data.task, data.origin) == ("sklearn", "classification", "manual")
    assert data.sha256 == hashlib.sha256(artifact).hexdigest() == version["sha256"]
    assert (data.artifact_uri, data.size_bytes) == (version["artifact_uri"], len(artifact))
    assert data.signature == Signature.model_validate(SIGNATURE)
    assert data.metrics == {"accuracy": 0.9}
    assert data.registered_by == "alice"
    assert data.parent_version is None and data.dataset_version is None


async def test_one_models_events_arrive_in_registration_order(kafka: EmbeddedBroker, tmp_path: Path) -> None:
    async with running_registry(tmp_path, kafka_bootstrap=kafka.bootstrap) as h:
        admin = h.auth()
        await h.client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=admin)
        for seed in range(3):
            assert (await upload_version(h, "churn", admin, artifact=skops_model(seed))).status_code == 201
        records = await read_topic(kafka.bootstrap, TOPIC.value, expect=3)

    assert len({rec.partition for rec in records}) == 1
    assert [parse_event(TOPIC, rec.value).data.version for rec in records] == [1, 2, 3]


async def wait_until_published(h: RegistryHarness, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while await h.app.state.relay.pending() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def test_registration_succeeds_while_the_broker_is_down_and_the_event_follows_exactly_once(
    kafka: EmbeddedBroker, tmp_path: Path
) -> None:
    kafka.stop()
    async with running_registry(tmp_path, kafka_bootstrap=kafka.bootstrap) as h:
        admin = h.auth()
        await h.client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=admin)
        r = await upload_version(h, "churn", admin)
        assert r.status_code == 201, r.text

        ready = await h.client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert ready.json()["checks"]["outbox"]["detail"] == "broker unreachable, 1 event(s) pending"

        kafka.start()
        await ensure_topics(kafka.bootstrap)
        # The relay retries with a backoff that doubles from 0.5 s up to 15 s.
        await wait_until_published(h, timeout_s=45)
        after = (await h.client.get("/readyz")).json()["checks"]["outbox"]["detail"]
        assert after == "broker connected, 0 event(s) pending"
        records = await read_topic(kafka.bootstrap, TOPIC.value, expect=1)

    assert [parse_event(TOPIC, rec.value).id for rec in records] == [r.json()["event_id"]]
