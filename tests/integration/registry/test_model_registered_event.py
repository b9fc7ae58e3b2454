"""Registering a version publishes exactly one `model.registered` through the outbox, even across
a broker outage."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest

from fleet_core.broker import ensure_topics
from fleet_core.events import Topic, parse_event
from fleet_sdk.embedded_broker import EmbeddedBroker
from support.kafka import read_topic
from support.registry import running_registry, skops_model, upload_version

pytestmark = pytest.mark.integration


async def test_registration_publishes_exactly_one_documented_event(
    kafka: EmbeddedBroker, tmp_path: Path
) -> None:
    async with running_registry(tmp_path, kafka_bootstrap=kafka.bootstrap) as h:
        admin = h.auth(subject="alice")
        await h.client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=admin)
        artifact = skops_model()
        r = await upload_version(h, "churn", {**admin, "X-Request-ID": "req-42"}, artifact=artifact)
        assert r.status_code == 201, r.text
        records = await read_topic(kafka.bootstrap, Topic.MODEL_REGISTERED.value, expect=1)

    assert len(records) == 1
    record = records[0]
    assert record.key == b"churn"
    event = parse_event(Topic.MODEL_REGISTERED, record.value)
    assert event.specversion == "1.0"
    assert event.type == "io.modelfleet.model.registered.v1"
    assert event.source == "/fleet/registry"
    assert event.subject == "churn"
    assert event.requestid == "req-42"  # the HTTP request id travels into the event
    assert event.id == r.json()["event_id"]
    data = event.data
    assert (data.model, data.version, data.team, data.flavor) == ("churn", 1, "growth", "sklearn")
    assert data.sha256 == hashlib.sha256(artifact).hexdigest()
    assert data.artifact_uri == r.json()["artifact_uri"]
    assert [f.name for f in data.signature.inputs] == ["x0", "x1"]
    assert data.registered_by == "alice"


async def test_registration_succeeds_with_the_broker_down_and_the_event_arrives_after_it_returns(
    kafka: EmbeddedBroker, tmp_path: Path
) -> None:
    kafka.stop()
    async with running_registry(tmp_path, kafka_bootstrap=kafka.bootstrap) as h:
        admin = h.auth()
        await h.client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=admin)
        r = await upload_version(h, "churn", admin)
        assert r.status_code == 201, r.text
        ready = (await h.client.get("/readyz")).json()
        assert ready["status"] == "ready"
        assert "1 event(s) pending" in ready["checks"]["outbox"]["detail"]

        kafka.start()
        await ensure_topics(kafka.bootstrap)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and await h.app.state.relay.pending():
            await asyncio.sleep(0.2)
        assert await h.app.state.relay.pending() == 0
        records = await read_topic(kafka.bootstrap, Topic.MODEL_REGISTERED.value, expect=1)

    assert [parse_event(Topic.MODEL_REGISTERED, rec.value).id for rec in records] == [r.json()["event_id"]]


async def test_registry_roundtrip_on_sqlite_and_postgres(db_url: str, tmp_path: Path) -> None:
    async with running_registry(tmp_path, database_url=db_url) as h:
        admin = h.auth()
        assert (
            await h.client.post("/v1/models", json={"name": "m", "team": "t"}, headers=admin)
        ).status_code == 201
        assert (
            await h.client.post("/v1/datasets", json={"name": "d", "team": "t"}, headers=admin)
        ).status_code == 201
        dv = await h.client.post(
            "/v1/datasets/d/versions",
            data={"metadata": '{"row_count": 3, "format": "csv"}'},
            files={"file": ("d.csv", b"a,b\n1,2\n3,4\n5,6\n")},
            headers=admin,
        )
        assert dv.status_code == 201, dv.text
        v1 = await upload_version(
            h, "m", admin, dataset_version={"dataset": "d", "version": 1}, aliases=["champion"]
        )
        v2 = await upload_version(h, "m", admin, artifact=skops_model(1), parent_version=1, origin="retrain")
        assert (v1.status_code, v2.status_code) == (201, 201), v2.text
        lineage = (await h.client.get("/v1/models/m/versions/2/lineage", headers=admin)).json()
        assert lineage["parent"]["version"] == 1 and lineage["origin"] == "retrain"
        first = (await h.client.get("/v1/models/m/versions/1/lineage", headers=admin)).json()
        assert first["dataset_version"]["content_hash"] == hashlib.sha256(b"a,b\n1,2\n3,4\n5,6\n").hexdigest()
        assert [c["version"] for c in first["children"]] == [2]
        champion = (await h.client.get("/v1/models/m/aliases/champion", headers=admin)).json()
        assert champion["version"] == 1

        # Two registrations racing for the same explicit version: one wins, one gets 409.
        racing = await asyncio.gather(
            upload_version(h, "m", admin, artifact=skops_model(2), version=7),
            upload_version(h, "m", admin, artifact=skops_model(3), version=7),
        )
        assert sorted(r.status_code for r in racing) == [201, 409]
