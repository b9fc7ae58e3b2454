"""Transactional outbox and idempotent inbox.

A service writes its state change and the event to publish in one database
transaction (``enqueue``); the ``OutboxRelay`` publishes pending rows in order
with ``acks=all`` and marks them sent, retrying with exponential backoff while
the broker is away. Consumers record each event id in the inbox (``claim``)
inside their own transaction, so a redelivered event is applied once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel
from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fleet_core.db import Database, UtcDateTime
from fleet_core.events import AuditRecorded, CloudEvent, Topic, make_event
from fleet_core.log import get_logger

log = get_logger(__name__)

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"


@dataclass(frozen=True)
class MessagingTables:
    outbox: Table
    inbox: Table


def messaging_tables(metadata: MetaData) -> MessagingTables:
    """Add the outbox and inbox tables to a service's metadata."""
    outbox = Table(
        "outbox",
        metadata,
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(400), nullable=True),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False, server_default=func.now()),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text, nullable=True),
        Column("sent_at", UtcDateTime(), nullable=True, index=True),
    )
    inbox = Table(
        "inbox",
        metadata,
        Column("event_id", String(64), primary_key=True),
        Column("consumer", String(200), primary_key=True),
        Column("topic", String(200), nullable=False),
        Column("processed_at", UtcDateTime(), nullable=False, server_default=func.now()),
    )
    return MessagingTables(outbox=outbox, inbox=inbox)


async def enqueue(session: AsyncSession, outbox: Table, topic: Topic | str, event: CloudEvent[Any]) -> None:
    """Stage ``event`` for publication in the caller's transaction."""
    await session.execute(
        outbox.insert().values(
            event_id=event.id,
            topic=str(topic),
            key=event.subject,
            payload=event.to_bytes(),
            created_at=datetime.now(UTC),
        )
    )


async def claim(session: AsyncSession, inbox: Table, *, event_id: str, consumer: str, topic: str) -> bool:
    """Record ``event_id`` as processed by ``consumer``; False if it already was."""
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        insert(inbox)
        .values(event_id=event_id, consumer=consumer, topic=topic, processed_at=datetime.now(UTC))
        .on_conflict_do_nothing()
    )
    result = await session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]


class OutboxMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "fleet_outbox_published", "Outbox events published", ["topic"], registry=registry
        )
        self.failures = Counter(
            "fleet_outbox_publish_failures", "Failed outbox publish attempts", registry=registry
        )
        self.pending = Gauge("fleet_outbox_pending", "Outbox events not yet published", registry=registry)


class OutboxRelay:
    """Publishes outbox rows in order, marks them sent, and survives broker outages."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Table,
        bootstrap_servers: list[str] | str,
        *,
        poll_interval_s: float = 1.0,
        batch_size: int = 200,
        publish_timeout_s: float = 10.0,
        max_backoff_s: float = 15.0,
        metrics: OutboxMetrics | None = None,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._bootstrap = bootstrap_servers
        self._poll = poll_interval_s
        self._batch = batch_size
        self._timeout = publish_timeout_s
        self._max_backoff = max_backoff_s
        self._metrics = metrics
        self._producer: AIOKafkaProducer | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.failing = False
        """The last publish attempt failed (broker away); cleared by the next success."""

    def notify(self) -> None:
        """Something was enqueued: publish now rather than at the next poll."""
        self._idle.clear()
        self._wake.set()

    async def drained(self, timeout_s: float) -> bool:
        """Wait until everything enqueued so far is published (acks=all); False on timeout.

        For APIs whose callers expect the effect to have left the building when the call
        returns (a rollback, say). Never raises: the events are safe in the outbox either way."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            if self.failing:
                return False  # the broker is away: waiting would only add latency
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._idle.wait(), remaining)
            except TimeoutError:
                return False
            if await self.pending() == 0:
                return True
            self.notify()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        # The flag, not only the cancel: on Python 3.11 ``asyncio.wait_for`` swallows a cancel that
        # races the inner wait completing (a notify at shutdown), and the loop would run on forever.
        self._stopping = True
        self._wake.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_producer()

    async def pending(self) -> int:
        async with self._sessions() as s:
            n = await s.scalar(
                select(func.count()).select_from(self._outbox).where(self._outbox.c.sent_at.is_(None))
            )
        return int(n or 0)

    async def _run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            try:
                sent = await self.flush()
                self.failing = False
                backoff = 0.5
                if sent:
                    continue  # there may be more
                self._idle.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected = False
                self.failing = True
                if self._metrics:
                    self._metrics.failures.inc()
                log.warning("outbox publish failed; will retry", error=str(exc), retry_in_s=backoff)
                await self._close_producer()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                acks="all",
                request_timeout_ms=int(self._timeout * 1000),
            )
            try:
                await asyncio.wait_for(producer.start(), self._timeout)
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
            self.connected = True
        return self._producer

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)

    async def flush(self) -> int:
        """Publish one batch of pending rows; returns how many were sent.

        No transaction is held while talking to the broker, so a slow broker never
        blocks the service's writes. If two relays race (several replicas), an event
        may be published twice; consumers are idempotent on the event id.
        """
        t = self._outbox
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(t.c.seq, t.c.topic, t.c.key, t.c.payload)
                    .where(t.c.sent_at.is_(None))
                    .order_by(t.c.seq)
                    .limit(self._batch)
                )
            ).all()
        if self._metrics:
            # A full batch may be the head of a longer backlog: then count it all, or a stuck
            # relay would report a flat `batch_size` and the backlog alert could never see growth.
            full = len(rows) == self._batch
            self._metrics.pending.set(await self.pending() if full else len(rows))
        if not rows:
            return 0
        producer = await self._ensure_producer()
        sent: list[int] = []
        try:
            for row in rows:
                await asyncio.wait_for(
                    producer.send_and_wait(
                        row.topic,
                        row.payload,
                        key=row.key.encode() if row.key else None,
                        headers=[("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())],
                    ),
                    self._timeout,
                )
                sent.append(row.seq)
                if self._metrics:
                    self._metrics.published.labels(row.topic).inc()
        except Exception as exc:
            await self._mark(sent, failed=(rows[len(sent)].seq, f"{type(exc).__name__}: {exc}"))
            raise
        await self._mark(sent)
        return len(sent)

    async def _mark(self, sent: list[int], failed: tuple[int, str] | None = None) -> None:
        t = self._outbox
        async with self._sessions() as session, session.begin():
            if sent:
                await session.execute(
                    update(t)
                    .where(t.c.seq.in_(sent))
                    .values(sent_at=datetime.now(UTC), attempts=t.c.attempts + 1, last_error=None)
                )
            if failed:
                await session.execute(
                    update(t)
                    .where(t.c.seq == failed[0])
                    .values(attempts=t.c.attempts + 1, last_error=failed[1][:2000])
                )


class MessagingStore:
    """Base of a service's store: transactions that wake the outbox relay when they commit, the
    inbox claim (idempotent consumers) and publishing through the outbox (in the caller's
    transaction, so a state change and its event commit together)."""

    def __init__(
        self,
        db: Database,
        messaging: MessagingTables,
        *,
        consumer: str,
        source: str,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.messaging = messaging
        self.consumer = consumer
        self.source = source
        self._on_commit = on_commit

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.db.transaction() as s:
            yield s
        if self._on_commit:
            self._on_commit()

    async def claim(self, s: AsyncSession, *, event_id: str, topic: Topic) -> bool:
        """Record an event as handled by this service; False if it already was."""
        return await claim(
            s, self.messaging.inbox, event_id=event_id, consumer=self.consumer, topic=topic.value
        )

    async def record_audit(self, entry: AuditRecorded) -> None:
        """The service's audit sink: ``audit.recorded`` through the outbox, for the registry's log."""
        async with self.transaction() as s:
            await self.publish(s, Topic.AUDIT_RECORDED, entry)

    async def publish(self, s: AsyncSession, topic: Topic, data: BaseModel) -> str:
        """Stage ``data`` on ``topic`` in the caller's transaction; returns the event id."""
        event = make_event(topic, data, source=self.source)  # type: ignore[arg-type]
        await enqueue(s, self.messaging.outbox, topic, event)
        return event.id
