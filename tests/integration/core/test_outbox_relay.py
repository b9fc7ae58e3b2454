"""The transactional outbox publishes every staged event exactly once, broker outages included."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import MetaData

from fleet_core.broker import ensure_topics
from fleet_core.db import Database
from fleet_core.events import RetrainRequested, Topic, make_event, parse_event
from fleet_core.outbox import OutboxRelay, claim, enqueue, messaging_tables
from fleet_sdk.embedded_broker import EmbeddedBroker
from support.kafka import read_topic

pytestmark = pytest.mark.integration


async def _database(url: str) -> tuple[Database, MetaData]:
    metadata = MetaData()
    tables = messaging_tables(metadata)
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return db, tables  # type: ignore[return-value]


def _event(model: str):  # type: ignore[no-untyped-def]
    return make_event(
        Topic.RETRAIN_REQUESTED,
        RetrainRequested(model=model, reason="manual", requested_by="test"),
        source="/test",
    )


async def _wait_until(predicate, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_outbox_publishes_each_event_exactly_once_in_order(kafka: EmbeddedBroker, db_url: str) -> None:
    db, tables = await _database(db_url)
    relay = OutboxRelay(db.sessions, tables.outbox, kafka.bootstrap, poll_interval_s=0.1)
    events = [_event(f"m{i}") for i in range(5)]
    async with db.transaction() as s:
        for e in events:
            await enqueue(s, tables.outbox, Topic.RETRAIN_REQUESTED, e)
    relay.start()
    try:
        await _wait_until(lambda: _pending_is(relay, 0))
        records = await read_topic(kafka.bootstrap, Topic.RETRAIN_REQUESTED.value, expect=5)
    finally:
        await relay.stop()
        await db.dispose()
    ids = [parse_event(Topic.RETRAIN_REQUESTED, r.value).id for r in records]
    assert sorted(ids) == sorted(e.id for e in events)  # each once, none twice
    assert {r.key for r in records} == {f"m{i}".encode() for i in range(5)}
    assert all(dict(r.headers)["content-type"].startswith(b"application/cloudevents+json") for r in records)


async def _pending_is(relay: OutboxRelay, n: int) -> bool:
    return await relay.pending() == n


async def test_outbox_keeps_events_while_broker_is_down_and_publishes_after_it_returns(
    kafka: EmbeddedBroker, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    db, tables = await _database(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}")
    relay = OutboxRelay(
        db.sessions, tables.outbox, kafka.bootstrap, poll_interval_s=0.1, publish_timeout_s=2, max_backoff_s=1
    )
    kafka.stop()
    relay.start()
    try:
        event = _event("churn")
        async with db.transaction() as s:
            await enqueue(s, tables.outbox, Topic.RETRAIN_REQUESTED, event)
        relay.notify()
        await asyncio.sleep(3)  # the relay tries and fails while the broker is away
        assert await relay.pending() == 1
        kafka.start()
        await ensure_topics(kafka.bootstrap)
        await _wait_until(lambda: _pending_is(relay, 0), timeout_s=45)
        records = await read_topic(kafka.bootstrap, Topic.RETRAIN_REQUESTED.value, expect=1)
    finally:
        await relay.stop()
        await db.dispose()
    assert [parse_event(Topic.RETRAIN_REQUESTED, r.value).id for r in records] == [event.id]


async def test_inbox_claims_an_event_once(db_url: str) -> None:
    db, tables = await _database(db_url)
    try:
        results = []
        for _ in range(2):
            async with db.transaction() as s:
                results.append(await claim(s, tables.inbox, event_id="e-1", consumer="c", topic="t"))
        async with db.transaction() as s:
            other = await claim(s, tables.inbox, event_id="e-1", consumer="another", topic="t")
    finally:
        await db.dispose()
    assert results == [True, False]
    assert other is True  # each consumer group keeps its own record
