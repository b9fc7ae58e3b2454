"""Transactional outbox and idempotent inbox.

A service writes its state change and the event to publish in one database
transaction (``enqueue``); the ``OutboxRelay`` publishes pending rows in order
with ``acks=all`` and marks them sent, retrying with exponential backoff while
the broker is away. Consumers record each event id in the inbox (``claim``)
inside their own transaction, so a redelivered event is applied once.

A row the broker refuses (too large, not authorised, an invalid topic) is retried
``FLEET_OUTBOX_MAX_ATTEMPTS`` times and then parked with its reason, so it never blocks
the rows behind it; a broker that is away parks nothing (every row waits, in order).
Sent outbox rows and old inbox rows are pruned on a schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fleet_core.broker import kafka_client_kwargs
from fleet_core.db import Database, UtcDateTime
from fleet_core.events import AuditRecorded, CloudEvent, Topic, make_event
from fleet_core.log import get_logger

log = get_logger(__name__)

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
DAY_S = 86400.0


class OutboxSettings(BaseSettings):
    """How the relay gives up on a row and how long messaging rows are kept (``FLEET_*``).

    Read from the same environment as the service's settings when a service does not pass them
    to the ``OutboxRelay`` itself."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="ignore", env_file=None)

    outbox_max_attempts: int = Field(default=5, ge=1, le=1000)
    """Publish attempts the broker may refuse one row (too large, not authorised...) before it is
    parked and the relay goes on with the rows behind it. A broker that is away counts none."""
    outbox_retention_s: float = Field(default=7 * DAY_S, gt=0)
    """Sent outbox rows older than this are deleted. Parked rows are kept until an operator acts."""
    inbox_retention_s: float = Field(default=30 * DAY_S, gt=0)
    """Inbox rows (event ids already applied) older than this are deleted. Keep it above the
    topics' retention (`retention.ms`), or a redelivered old event could be applied again."""
    outbox_prune_interval_s: float = Field(default=3600.0, gt=0)
    """How often the relay prunes sent outbox rows and old inbox rows."""


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
        # Set when the relay gave up on the row (refused FLEET_OUTBOX_MAX_ATTEMPTS times): it is no
        # longer pending, so the rows behind it go out; `parked_reason` says why.
        Column("parked_at", UtcDateTime(), nullable=True, index=True),
        Column("parked_reason", Text, nullable=True),
    )
    inbox = Table(
        "inbox",
        metadata,
        Column("event_id", String(64), primary_key=True),
        Column("consumer", String(200), primary_key=True),
        Column("topic", String(200), nullable=False),
        Column("processed_at", UtcDateTime(), nullable=False, server_default=func.now(), index=True),
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
        self.parked = Counter(
            "fleet_outbox_parked",
            "Outbox events parked after the broker refused them FLEET_OUTBOX_MAX_ATTEMPTS times",
            ["topic"],
            registry=registry,
        )
        self.parked_events = Gauge(
            "fleet_outbox_parked_events",
            "Outbox events parked and waiting for an operator",
            registry=registry,
        )
        self.pruned = Counter(
            "fleet_outbox_pruned_rows", "Sent outbox and old inbox rows deleted", ["table"], registry=registry
        )


def broker_away(exc: BaseException) -> bool:
    """The broker (or the way to it) failed, not the row: a timeout or a lost connection. Such a
    failure counts no attempt against the row, so an outage never parks anything."""
    if isinstance(exc, TimeoutError | KafkaTimeoutError | KafkaConnectionError | OSError):
        return True
    return isinstance(exc, KafkaError) and bool(exc.retriable)


class _RowRefused(Exception):
    """The broker refused the head row; it was counted and will be tried again after a backoff."""


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
        inbox: Table | None = None,
        settings: OutboxSettings | None = None,
    ) -> None:
        """``inbox`` is pruned with the outbox; by default the ``inbox`` table of the outbox's own
        metadata (``messaging_tables`` puts both there). ``settings`` default to the environment."""
        self._sessions = sessions
        self._outbox = outbox
        self._bootstrap = bootstrap_servers
        self._poll = poll_interval_s
        self._batch = batch_size
        self._timeout = publish_timeout_s
        self._max_backoff = max_backoff_s
        self._metrics = metrics
        self.inbox = inbox if inbox is not None else outbox.metadata.tables.get("inbox")
        self.settings = settings or OutboxSettings()
        self._producer: AIOKafkaProducer | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._prune_task: asyncio.Task[None] | None = None
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
        self._prune_task = asyncio.create_task(self._prune_forever(), name="outbox-prune")

    async def stop(self) -> None:
        # The flag, not only the cancel: on Python 3.11 ``asyncio.wait_for`` swallows a cancel that
        # races the inner wait completing (a notify at shutdown), and the loop would run on forever.
        self._stopping = True
        self._wake.set()
        for task in (self._task, self._prune_task):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._close_producer()

    def _unsent(self) -> Any:
        return self._outbox.c.sent_at.is_(None) & self._outbox.c.parked_at.is_(None)

    async def pending(self) -> int:
        """Rows waiting to be published (parked rows are not)."""
        async with self._sessions() as s:
            n = await s.scalar(select(func.count()).select_from(self._outbox).where(self._unsent()))
        return int(n or 0)

    async def parked(self) -> int:
        """Rows the relay gave up on, waiting for an operator (docs/operations.md)."""
        async with self._sessions() as s:
            n = await s.scalar(
                select(func.count()).select_from(self._outbox).where(self._outbox.c.parked_at.is_not(None))
            )
        return int(n or 0)

    async def prune(self, now: datetime | None = None) -> tuple[int, int]:
        """Delete sent outbox rows older than ``outbox_retention_s`` and inbox rows older than
        ``inbox_retention_s``; returns how many of each. Unsent and parked rows stay."""
        now = now or datetime.now(UTC)
        t = self._outbox
        sent_before = now - timedelta(seconds=self.settings.outbox_retention_s)
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(t).where(t.c.sent_at.is_not(None) & (t.c.sent_at < sent_before))
            )
            outbox_rows = int(result.rowcount or 0)  # type: ignore[attr-defined]
            inbox_rows = 0
            if self.inbox is not None:
                processed_before = now - timedelta(seconds=self.settings.inbox_retention_s)
                result = await session.execute(
                    delete(self.inbox).where(self.inbox.c.processed_at < processed_before)
                )
                inbox_rows = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if self._metrics:
            self._metrics.pruned.labels("outbox").inc(outbox_rows)
            self._metrics.pruned.labels("inbox").inc(inbox_rows)
        if outbox_rows or inbox_rows:
            log.info("messaging rows pruned", outbox=outbox_rows, inbox=inbox_rows)
        return outbox_rows, inbox_rows

    async def _prune_forever(self) -> None:
        while not self._stopping:
            try:
                await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try again at the next interval
                log.warning("messaging prune failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.settings.outbox_prune_interval_s)

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
            except _RowRefused as exc:
                # The broker is up and refused one row: keep the connection, try the row again soon.
                if self._metrics:
                    self._metrics.failures.inc()
                log.warning("outbox row refused; will retry", error=str(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
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
                **kafka_client_kwargs(self._bootstrap),
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
        """Publish one batch of pending rows; returns how many left the queue (sent or parked).

        No transaction is held while talking to the broker, so a slow broker never
        blocks the service's writes. If two relays race (several replicas), an event
        may be published twice; consumers are idempotent on the event id.
        """
        t = self._outbox
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(t.c.seq, t.c.topic, t.c.key, t.c.payload, t.c.attempts)
                    .where(self._unsent())
                    .order_by(t.c.seq)
                    .limit(self._batch)
                )
            ).all()
        if self._metrics:
            # A full batch may be the head of a longer backlog: then count it all, or a stuck
            # relay would report a flat `batch_size` and the backlog alert could never see growth.
            full = len(rows) == self._batch
            self._metrics.pending.set(await self.pending() if full else len(rows))
            self._metrics.parked_events.set(await self.parked())
        if not rows:
            return 0
        producer = await self._ensure_producer()
        sent: list[int] = []
        moved = 0
        for row in rows:
            try:
                await asyncio.wait_for(
                    producer.send_and_wait(
                        row.topic,
                        row.payload,
                        key=row.key.encode() if row.key else None,
                        headers=[("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())],
                    ),
                    self._timeout,
                )
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if broker_away(exc):
                    await self._mark(sent, failed=(row.seq, error))
                    raise
                parked = await self._refused(sent, row, error)
                moved += len(sent)
                sent = []
                if not parked:
                    raise _RowRefused(error) from exc
                moved += 1
                continue  # the rows behind a parked one go out now
            sent.append(row.seq)
            if self._metrics:
                self._metrics.published.labels(row.topic).inc()
        await self._mark(sent)
        return moved + len(sent)

    async def _refused(self, sent: list[int], row: Any, error: str) -> bool:
        """Count a refused attempt of ``row``; park it once it reached the limit. True if parked."""
        t = self._outbox
        attempts = row.attempts + 1
        park = attempts >= self.settings.outbox_max_attempts
        await self._mark(sent)
        async with self._sessions() as session, session.begin():
            values: dict[str, Any] = {"attempts": attempts, "last_error": error[:2000]}
            if park:
                values["parked_at"] = datetime.now(UTC)
                values["parked_reason"] = f"refused {attempts} time(s), last: {error}"[:2000]
            await session.execute(update(t).where(t.c.seq == row.seq).values(**values))
        if park:
            log.error(
                "outbox event parked: the broker refused it; the relay goes on with the next ones",
                seq=row.seq,
                topic=row.topic,
                attempts=attempts,
                error=error[:500],
            )
            if self._metrics:
                self._metrics.parked.labels(row.topic).inc()
                self._metrics.parked_events.inc()
        return park

    async def _mark(self, sent: list[int], failed: tuple[int, str] | None = None) -> None:
        """Mark ``sent`` rows sent; record ``failed``'s error without counting an attempt (the
        broker was away, the row is not at fault)."""
        t = self._outbox
        if not sent and not failed:
            return
        async with self._sessions() as session, session.begin():
            if sent:
                await session.execute(
                    update(t)
                    .where(t.c.seq.in_(sent))
                    .values(sent_at=datetime.now(UTC), attempts=t.c.attempts + 1, last_error=None)
                )
            if failed:
                seq, error = failed
                await session.execute(update(t).where(t.c.seq == seq).values(last_error=error[:2000]))


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

    async def claimed(self, s: AsyncSession, event_ids: Iterable[str]) -> set[str]:
        """Which of ``event_ids`` this service already handled (a redelivered batch skips them)."""
        ids = list(event_ids)
        t = self.messaging.inbox
        found: set[str] = set()
        for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            chunk = ids[start : start + 500]
            rows = await s.scalars(
                select(t.c.event_id).where(t.c.consumer == self.consumer, t.c.event_id.in_(chunk))
            )
            found.update(rows)
        return found

    async def record_audit(self, entry: AuditRecorded) -> None:
        """The service's audit sink: ``audit.recorded`` through the outbox, for the registry's log."""
        async with self.transaction() as s:
            await self.publish(s, Topic.AUDIT_RECORDED, entry)

    async def publish(
        self, s: AsyncSession, topic: Topic, data: BaseModel, *, auth: str | None = None
    ) -> str:
        """Stage ``data`` on ``topic`` in the caller's transaction; returns the event id. ``auth``
        is the bearer token the event carries (``fleetauth``) when its consumer acts on it."""
        event = make_event(topic, data, source=self.source, auth=auth)  # type: ignore[arg-type]
        await enqueue(s, self.messaging.outbox, topic, event)
        return event.id
