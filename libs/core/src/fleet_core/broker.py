"""Kafka wiring: the FastStream broker, topic creation, and consumers with a dead-letter path.

``subscribe`` registers a typed handler for one topic. The wrapper validates the
CloudEvent envelope and payload; a message that cannot be decoded goes straight
to ``<topic>.dlq``; a handler that raises is retried with backoff and, after
``max_attempts`` failures, the message goes to ``<topic>.dlq`` with the error in
its headers, and the consumer goes on with the next message.

Every Kafka client of the platform is built with ``kafka_client_kwargs`` (aiokafka) or
``faststream_security`` (FastStream), so the ``FLEET_KAFKA_*`` security settings carried by
``FleetSettings.kafka_servers`` reach all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import CollectorRegistry, Counter

from fleet_core.events import CloudEvent, EventDecodeError, Topic, dead_letter_topic, parse_event
from fleet_core.log import bind_request_id, clear_request_id, get_logger
from fleet_core.settings import KafkaSecurity, KafkaServers

log = get_logger(__name__)

EventHandler = Callable[[CloudEvent[Any]], Awaitable[None]]


def kafka_security_of(bootstrap_servers: list[str] | str) -> KafkaSecurity:
    """The security settings the servers carry (``FleetSettings.kafka_servers``); PLAINTEXT for a
    bare list or string."""
    security = getattr(bootstrap_servers, "security", None)
    return security if isinstance(security, KafkaSecurity) else KafkaSecurity()


def kafka_client_kwargs(bootstrap_servers: list[str] | str) -> dict[str, Any]:
    """``bootstrap_servers`` and the security keyword arguments of an aiokafka producer, consumer
    or admin client: the one place every Kafka client of the platform gets them from."""
    servers = list(KafkaServers(bootstrap_servers))
    return {"bootstrap_servers": servers, **kafka_security_of(bootstrap_servers).client_kwargs()}


def faststream_security(security: KafkaSecurity) -> BaseSecurity | None:
    """The same settings as FastStream's ``security`` object (it builds the aiokafka clients)."""
    if security.protocol == "PLAINTEXT":
        return None
    context, use_ssl = security.ssl_context(), security.uses_ssl
    if not security.uses_sasl:
        return BaseSecurity(ssl_context=context, use_ssl=use_ssl)
    kinds = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
    kind = kinds[security.sasl_mechanism or "PLAIN"]
    return kind(
        username=security.sasl_username or "",
        password=security.sasl_password or "",
        ssl_context=context,
        use_ssl=use_ssl,
    )


def make_broker(bootstrap_servers: list[str] | str, **kwargs: Any) -> KafkaBroker:
    """The service's FastStream broker; producers wait for all in-sync replicas."""
    kwargs.setdefault("acks", "all")
    kwargs.setdefault("logger", None)
    kwargs.setdefault("security", faststream_security(kafka_security_of(bootstrap_servers)))
    return KafkaBroker(kafka_client_kwargs(bootstrap_servers)["bootstrap_servers"], **kwargs)


def all_topics() -> list[str]:
    """Every topic of the catalogue and its dead-letter twin."""
    return [name for t in Topic for name in (t.value, t.dlq)]


async def ensure_topics(
    bootstrap_servers: list[str] | str,
    topics: Iterable[str] | None = None,
    *,
    partitions: int = 3,
    replication: int = 1,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create missing topics; returns the names created."""
    wanted = list(topics) if topics is not None else all_topics()
    admin = AIOKafkaAdminClient(
        **kafka_client_kwargs(bootstrap_servers), request_timeout_ms=int(timeout_s * 1000)
    )
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, partitions if not t.endswith(".dlq") else 1, replication) for t in missing]
                )
        return missing
    finally:
        await admin.close()


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.processed = Counter(
            "fleet_events_processed", "Events handled", ["topic", "consumer"], registry=registry
        )
        self.dead_lettered = Counter(
            "fleet_events_dead_lettered",
            "Events moved to the dead-letter topic",
            ["topic", "consumer", "reason"],
            registry=registry,
        )
        self.retries = Counter(
            "fleet_event_retries", "Handler retries", ["topic", "consumer"], registry=registry
        )


def subscribe(
    broker: KafkaBroker,
    topic: Topic,
    handler: EventHandler,
    *,
    consumer: str,
    max_attempts: int = 3,
    retry_backoff_s: float = 0.2,
    metrics: ConsumerMetrics | None = None,
    auto_offset_reset: str = "earliest",
) -> None:
    """Register ``handler`` for ``topic`` in consumer group ``consumer`` with retries and DLQ."""

    async def dead_letter(msg: KafkaMessage, reason: str, error: str, attempts: int) -> None:
        raw = msg.raw_message
        headers = {
            "fleet-dlq-reason": reason,
            "fleet-dlq-error": error[:4000],
            "fleet-dlq-attempts": str(attempts),
            "fleet-dlq-topic": topic.value,
            "fleet-dlq-consumer": consumer,
            "fleet-dlq-partition": str(getattr(raw, "partition", "")),
            "fleet-dlq-offset": str(getattr(raw, "offset", "")),
        }
        key = getattr(raw, "key", None)
        # Raises if the broker is away: the message is then not acknowledged and comes back.
        await broker.publish(msg.body, dead_letter_topic(topic.value), key=key, headers=headers)
        if metrics:
            metrics.dead_lettered.labels(topic.value, consumer, reason).inc()
        log.warning(
            "event dead-lettered", topic=topic.value, consumer=consumer, reason=reason, error=error[:500]
        )

    async def on_message(body: bytes, msg: KafkaMessage) -> None:
        try:
            event = parse_event(topic, body)
        except EventDecodeError as exc:
            await dead_letter(msg, "decode", str(exc), 1)
            return
        bind_request_id(event.requestid or event.id)
        try:
            for attempt in range(1, max_attempts + 1):
                try:
                    await handler(event)
                except Exception as exc:
                    if attempt == max_attempts:
                        await dead_letter(msg, "handler", f"{type(exc).__name__}: {exc}", attempt)
                        return
                    if metrics:
                        metrics.retries.labels(topic.value, consumer).inc()
                    log.info("handler failed; retrying", topic=topic.value, attempt=attempt, error=str(exc))
                    await asyncio.sleep(retry_backoff_s * 2 ** (attempt - 1))
                else:
                    if metrics:
                        metrics.processed.labels(topic.value, consumer).inc()
                    return
        finally:
            clear_request_id()

    async def raw_body(msg: KafkaMessage) -> bytes:
        # Keep the bytes as they arrived: decoding is ours, so a malformed message reaches the DLQ.
        return msg.body

    on_message.__name__ = f"{consumer}_{topic.value.replace('.', '_')}"
    broker.subscriber(
        topic.value,
        group_id=consumer,
        decoder=raw_body,
        auto_offset_reset=auto_offset_reset,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title=f"{consumer}:{topic.value}",
    )(on_message)


BatchHandler = Callable[[list[CloudEvent[Any]]], Awaitable[None]]


class BatchConsumer:
    """Consumes topics in batches with one raw aiokafka consumer, for services that must keep up
    with traffic (``inference.logged``): no per-message framework overhead, and one group member
    for all its topics, so a start is one group join rather than a rebalance per subscriber.

    The same delivery rules as ``subscribe``: an undecodable message goes to ``<topic>.dlq`` at
    once; when a handler fails on a batch, the batch is retried one event at a time so only the
    event that keeps failing (``max_attempts``) is dead-lettered. Offsets are committed after
    each poll is handled (at least once); when the broker is away the consumer rewinds to the
    last committed offsets and retries with backoff.
    """

    def __init__(
        self,
        bootstrap_servers: list[str] | str,
        handlers: Mapping[Topic, BatchHandler],
        *,
        consumer: str,
        max_records: int = 2000,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.2,
        metrics: ConsumerMetrics | None = None,
        auto_offset_reset: str = "earliest",
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.handlers = dict(handlers)
        self.consumer_group = consumer
        self.max_records = max_records
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.metrics = metrics
        self.auto_offset_reset = auto_offset_reset
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            *(topic.value for topic in self.handlers),
            **kafka_client_kwargs(self.bootstrap_servers),
            group_id=self.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset=self.auto_offset_reset,
            max_poll_records=self.max_records,
            fetch_max_bytes=64 * 2**20,
            max_partition_fetch_bytes=16 * 2**20,
        )
        producer = AIOKafkaProducer(**kafka_client_kwargs(self.bootstrap_servers), acks="all")
        await consumer.start()
        try:
            await producer.start()
        except Exception:
            await consumer.stop()
            raise
        self._consumer, self._producer = consumer, producer
        self._task = asyncio.create_task(self._run(), name=f"{self.consumer_group}-batches")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        backoff = 0.5
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=self.max_records)
                # One handler call per topic and poll, over all its partitions (each partition's
                # records stay in order, and a key lives in one partition): a handler that does
                # per-batch work (the deployer's pool round) does it once, not once per partition.
                by_topic: dict[str, list[Any]] = {}
                for partition, records in batches.items():
                    by_topic.setdefault(partition.topic, []).extend(records)
                for topic, records in by_topic.items():
                    await self._handle(Topic(topic), records)
                if batches:
                    await self._consumer.commit()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "batch consumer failed; rewinding to the committed offsets",
                    consumer=self.consumer_group,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                with contextlib.suppress(Exception):
                    await self._consumer.seek_to_committed()

    async def _handle(self, topic: Topic, records: list[Any]) -> None:
        events: list[tuple[Any, CloudEvent[Any]]] = []
        for record in records:
            try:
                events.append((record, parse_event(topic, record.value)))
            except EventDecodeError as exc:
                await self._dead_letter(topic, record, "decode", str(exc), 1)
        if not events:
            return
        try:
            await self.handlers[topic]([event for _, event in events])
        except Exception:
            for record, event in events:
                await self._one(topic, record, event)
            return
        if self.metrics:
            self.metrics.processed.labels(topic.value, self.consumer_group).inc(len(events))

    async def _one(self, topic: Topic, record: Any, event: CloudEvent[Any]) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self.handlers[topic]([event])
            except Exception as exc:
                if attempt == self.max_attempts:
                    await self._dead_letter(topic, record, "handler", f"{type(exc).__name__}: {exc}", attempt)
                    return
                if self.metrics:
                    self.metrics.retries.labels(topic.value, self.consumer_group).inc()
                await asyncio.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
            else:
                if self.metrics:
                    self.metrics.processed.labels(topic.value, self.consumer_group).inc()
                return

    async def _dead_letter(self, topic: Topic, record: Any, reason: str, error: str, attempts: int) -> None:
        assert self._producer is not None
        headers = [
            ("fleet-dlq-reason", reason.encode()),
            ("fleet-dlq-error", error[:4000].encode()),
            ("fleet-dlq-attempts", str(attempts).encode()),
            ("fleet-dlq-topic", topic.value.encode()),
            ("fleet-dlq-consumer", self.consumer_group.encode()),
            ("fleet-dlq-partition", str(record.partition).encode()),
            ("fleet-dlq-offset", str(record.offset).encode()),
        ]
        # Raises if the broker is away: the poll is not committed and the records come back.
        await self._producer.send_and_wait(
            dead_letter_topic(topic.value), record.value, key=record.key, headers=headers
        )
        if self.metrics:
            self.metrics.dead_lettered.labels(topic.value, self.consumer_group, reason).inc()
        log.warning("event dead-lettered", topic=topic.value, consumer=self.consumer_group, reason=reason)
