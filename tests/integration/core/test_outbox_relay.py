"""The transactional outbox publishes every staged event exactly once, broker outages included,
and the inbox lets a consumer apply an event once. Real Tansu broker; SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from prometheus_client import CollectorRegistry
from sqlalchemy import MetaData, select

from fleet_core.broker import ensure_topics
from fleet_core.db import Database
from fleet_core.events import CloudEvent, RetrainRequested, Topic, make_event, parse_event
from fleet_core.outbox import (
    MessagingTables,
    OutboxMetrics,
    OutboxRelay,
    OutboxSettings,
    claim,
    enqueue,
    messaging_tables,
)
from fleet_core.service import outbox_check
from fleet_sdk.embedded_broker import EmbeddedBroker, free_port
from support.kafka import read_topic

pytestmark = pytest.mark.integration

TOPIC = Topic.RETRAIN_REQUESTED


@dataclass
class Messaging:
    db: Database
    tables: MessagingTables

    async def stage(self, *events: CloudEvent[Any]) -> None:
        """What a service does: its state change and the events, in one transaction."""
        async with self.db.transaction() as s:
            for event in events:
                await enqueue(s, self.tables.outbox, TOPIC, event)


@pytest.fixture
async def messaging(db_url: str) -> AsyncIterator[Messaging]:
    """A tiny service schema: just the outbox and inbox tables, on SQLite or PostgreSQL."""
    metadata = MetaData()
    tables = messaging_tables(metadata)
    db = Database(db_url)
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield Messaging(db, tables)
    await db.dispose()


def retrain(model: str) -> CloudEvent[Any]:
    return make_event(
        TOPIC, RetrainRequested(model=model, reason="manual", requested_by="test"), source="/test"
    )


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout_s: float = 30.0
) -> None:
    """Poll ``condition`` (sync or async) until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if await result if inspect.isawaitable(result) else result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        await asyncio.sleep(0.05)


async def test_outbox_publishes_each_event_exactly_once(kafka: EmbeddedBroker, messaging: Messaging) -> None:
    events = [retrain(f"m{i}") for i in range(5)]
    await messaging.stage(*events)
    relay = OutboxRelay(messaging.db.sessions, messaging.tables.outbox, kafka.bootstrap, poll_interval_s=0.1)
    relay.start()
    try:
        await eventually(lambda: _pending_is(relay, 0), "the relay marks every event sent")
        records = await read_topic(kafka.bootstrap, TOPIC.value, expect=5)
    finally:
        await relay.stop()

    ids = [parse_event(TOPIC, r.value).id for r in records]
    assert sorted(ids) == sorted(e.id for e in events)  # each one, none twice
    assert {r.key for r in records} == {f"m{i}".encode() for i in range(5)}  # keyed by model
    assert all(dict(r.headers)["content-type"].startswith(b"application/cloudevents+json") for r in records)


async def test_outbox_publishes_one_models_events_in_the_order_they_were_staged(
    kafka: EmbeddedBroker, messaging: Messaging
) -> None:
    events = [retrain("churn") for _ in range(4)]
    for event in events:  # separate transactions, as separate requests would be
        await messaging.stage(event)
    relay = OutboxRelay(messaging.db.sessions, messaging.tables.outbox, kafka.bootstrap, poll_interval_s=0.1)
    relay.start()
    try:
        await eventually(lambda: _pending_is(relay, 0), "the relay marks every event sent")
        records = await read_topic(kafka.bootstrap, TOPIC.value, expect=4)
    finally:
        await relay.stop()
    assert [parse_event(TOPIC, r.value).id for r in records] == [e.id for e in events]


async def test_outbox_publishes_after_broker_returns(kafka: EmbeddedBroker, messaging: Messaging) -> None:
    registry = CollectorRegistry()
    relay = OutboxRelay(
        messaging.db.sessions,
        messaging.tables.outbox,
        kafka.bootstrap,
        poll_interval_s=0.1,
        publish_timeout_s=2,
        max_backoff_s=0.5,
        metrics=OutboxMetrics(registry),
    )

    def failures() -> float:
        return registry.get_sample_value("fleet_outbox_publish_failures_total") or 0.0

    relay.start()
    try:
        before = retrain("churn")
        await messaging.stage(before)
        relay.notify()
        await eventually(lambda: _pending_is(relay, 0), "the first event is published")
        assert relay.connected

        kafka.stop(timeout_s=0.5)  # killed if it lingers: Tansu's graceful stop waits ~5 s for clients
        during = retrain("churn")
        await messaging.stage(during)  # the service's write succeeds without a broker
        relay.notify()
        await eventually(lambda: failures() >= 2, "the relay tries, fails, and tries again")
        assert await relay.pending() == 1
        row = await _outbox_row(messaging, during.id)
        assert row["sent_at"] is None

        kafka.start()  # same port, empty: memory only
        await ensure_topics(kafka.bootstrap)
        await eventually(lambda: _pending_is(relay, 0), "the staged event is published", timeout_s=45)
        records = await read_topic(kafka.bootstrap, TOPIC.value, expect=1)
    finally:
        await relay.stop()

    # The restarted broker lost `before` (memory only); `during` arrived exactly once.
    assert [parse_event(TOPIC, r.value).id for r in records] == [during.id]
    row = await _outbox_row(messaging, during.id)
    assert row["sent_at"] is not None and row["last_error"] is None


async def test_inbox_claims_an_event_once_per_consumer(messaging: Messaging) -> None:
    inbox = messaging.tables.inbox
    results = []
    for _ in range(2):
        async with messaging.db.transaction() as s:
            results.append(await claim(s, inbox, event_id="e-1", consumer="deployer", topic=TOPIC.value))
    async with messaging.db.transaction() as s:
        other = await claim(s, inbox, event_id="e-1", consumer="monitor", topic=TOPIC.value)

    assert results == [True, False]
    assert other is True  # each consumer group keeps its own record


async def test_inbox_claim_is_undone_when_the_consumers_transaction_fails(messaging: Messaging) -> None:
    inbox = messaging.tables.inbox
    with pytest.raises(RuntimeError):
        async with messaging.db.transaction() as s:
            assert await claim(s, inbox, event_id="e-2", consumer="deployer", topic=TOPIC.value)
            raise RuntimeError("the handler failed after claiming")
    async with messaging.db.transaction() as s:  # so the redelivered event is applied
        assert await claim(s, inbox, event_id="e-2", consumer="deployer", topic=TOPIC.value)


async def test_the_pending_gauge_counts_a_whole_backlog_not_one_batch(messaging: Messaging) -> None:
    """With no broker, everything staged stays pending; the gauge behind the backlog alert must show
    all of it, beyond one batch, so that a growing backlog looks like one."""
    registry = CollectorRegistry()
    relay = OutboxRelay(
        messaging.db.sessions,
        messaging.tables.outbox,
        f"127.0.0.1:{free_port()}",
        batch_size=10,
        publish_timeout_s=1,
        metrics=OutboxMetrics(registry),
    )

    async def gauge_after_a_flush() -> float:
        with contextlib.suppress(Exception):  # no broker: the flush fails after reading the batch
            await relay.flush()
        return registry.get_sample_value("fleet_outbox_pending") or 0.0

    try:
        await messaging.stage(*(retrain(f"m{i}") for i in range(4)))
        assert await gauge_after_a_flush() == 4
        await messaging.stage(*(retrain(f"m{i}") for i in range(25)))
        assert await gauge_after_a_flush() == 29
    finally:
        await relay.stop()


async def _pending_is(relay: OutboxRelay, n: int) -> bool:
    return await relay.pending() == n


async def _outbox_row(messaging: Messaging, event_id: str) -> dict[str, Any]:
    outbox = messaging.tables.outbox
    async with messaging.db.sessions() as s:
        row = (await s.execute(select(outbox).where(outbox.c.event_id == event_id))).one()
    return dict(row._mapping)


async def _stage_raw(messaging: Messaging, event_id: str, payload: bytes, **columns: Any) -> None:
    """An outbox row written as-is (a payload no real event would have, old timestamps)."""
    async with messaging.db.transaction() as s:
        await s.execute(
            messaging.tables.outbox.insert().values(
                event_id=event_id, topic=TOPIC.value, key="churn", payload=payload, **columns
            )
        )


async def test_a_row_the_broker_refuses_is_parked_and_the_rows_behind_it_go_out(
    kafka: EmbeddedBroker, messaging: Messaging
) -> None:
    """A message over the producer's maximum request size (the broker's message size limit) can
    never be published; after FLEET_OUTBOX_MAX_ATTEMPTS it is parked with its reason, the parked
    metric moves, and the events staged after it are published in order."""
    first = retrain("churn")
    await messaging.stage(first)
    await _stage_raw(messaging, "too-large", b"x" * (2 * 2**20))  # 2 MiB: over the 1 MiB limit
    after = [retrain("churn") for _ in range(3)]
    await messaging.stage(*after)
    registry = CollectorRegistry()
    relay = OutboxRelay(
        messaging.db.sessions,
        messaging.tables.outbox,
        kafka.bootstrap,
        poll_interval_s=0.1,
        max_backoff_s=0.2,
        metrics=OutboxMetrics(registry),
        settings=OutboxSettings(outbox_max_attempts=3),
    )
    relay.start()
    try:
        await eventually(lambda: _pending_is(relay, 0), "the rows behind the refused one are published")
        records = await read_topic(kafka.bootstrap, TOPIC.value, expect=4)
        await eventually(
            lambda: registry.get_sample_value("fleet_outbox_parked_events") == 1, "the parked gauge shows it"
        )
    finally:
        await relay.stop()

    assert [parse_event(TOPIC, r.value).id for r in records] == [first.id, *(e.id for e in after)]
    parked = await _outbox_row(messaging, "too-large")
    assert parked["sent_at"] is None and parked["parked_at"] is not None
    assert parked["attempts"] == 3
    assert "MessageSizeTooLargeError" in parked["parked_reason"]
    assert registry.get_sample_value("fleet_outbox_parked_total", {"topic": TOPIC.value}) == 1
    assert await relay.parked() == 1


async def test_a_broker_that_is_away_parks_nothing(messaging: Messaging) -> None:
    """Every publish fails while the broker is away; that is not the row's fault, so no attempt
    is counted and the row stays pending, first in line, however long the outage."""
    relay = OutboxRelay(
        messaging.db.sessions,
        messaging.tables.outbox,
        f"127.0.0.1:{free_port()}",
        publish_timeout_s=0.5,
        settings=OutboxSettings(outbox_max_attempts=1),
    )
    event = retrain("churn")
    await messaging.stage(event)
    try:
        for _ in range(3):
            with pytest.raises((KafkaConnectionError, TimeoutError)):
                await relay.flush()
    finally:
        await relay.stop()
    row = await _outbox_row(messaging, event.id)
    assert row["parked_at"] is None and row["attempts"] == 0
    assert await relay.pending() == 1


async def test_sent_rows_and_old_inbox_rows_are_pruned_on_a_schedule(
    kafka: EmbeddedBroker, messaging: Messaging
) -> None:
    """The running relay deletes sent outbox rows past their retention and inbox rows past theirs;
    recent rows, unsent rows (however old) and parked rows stay."""
    now = datetime.now(UTC)
    long_ago = now - timedelta(days=10)
    await _stage_raw(messaging, "sent-long-ago", b"{}", created_at=long_ago, sent_at=long_ago, attempts=1)
    await _stage_raw(messaging, "sent-recently", b"{}", created_at=now, sent_at=now, attempts=1)
    await _stage_raw(
        messaging, "parked-long-ago", b"{}", created_at=long_ago, parked_at=long_ago, parked_reason="refused"
    )
    unsent = retrain("churn")
    await messaging.stage(unsent)  # old but never sent: the relay publishes it, pruning never drops it
    inbox = messaging.tables.inbox
    async with messaging.db.transaction() as s:
        await s.execute(inbox.insert().values(event_id="old", consumer="c", topic="t", processed_at=long_ago))
        await s.execute(inbox.insert().values(event_id="new", consumer="c", topic="t", processed_at=now))
    registry = CollectorRegistry()
    relay = OutboxRelay(
        messaging.db.sessions,
        messaging.tables.outbox,
        kafka.bootstrap,
        poll_interval_s=0.1,
        metrics=OutboxMetrics(registry),
        settings=OutboxSettings(
            outbox_retention_s=7 * 86400, inbox_retention_s=7 * 86400, outbox_prune_interval_s=0.2
        ),
    )
    relay.start()
    try:
        await eventually(
            lambda: registry.get_sample_value("fleet_outbox_pruned_rows_total", {"table": "inbox"}) == 1,
            "the scheduled prune ran",
        )
        await eventually(lambda: _pending_is(relay, 0), "the unsent row is published, not pruned")
    finally:
        await relay.stop()

    async with messaging.db.sessions() as s:
        outbox_ids = set((await s.scalars(select(messaging.tables.outbox.c.event_id))).all())
        inbox_ids = set((await s.scalars(select(inbox.c.event_id))).all())
    assert outbox_ids == {"sent-recently", "parked-long-ago", unsent.id}
    assert inbox_ids == {"new"}
    assert registry.get_sample_value("fleet_outbox_pruned_rows_total", {"table": "outbox"}) == 1


async def test_readiness_names_parked_events(messaging: Messaging) -> None:
    relay = OutboxRelay(messaging.db.sessions, messaging.tables.outbox, f"127.0.0.1:{free_port()}")
    check = outbox_check(relay)
    assert await check() == (True, "broker unreachable, 0 event(s) pending")
    await _stage_raw(
        messaging, "parked", b"{}", parked_at=datetime.now(UTC), parked_reason="refused 5 time(s)"
    )
    assert await check() == (True, "broker unreachable, 0 event(s) pending, 1 parked")
