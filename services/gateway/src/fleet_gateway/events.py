"""The gateway's Kafka traffic besides inference logs: ``inference.feedback`` and ``audit.recorded``
out, ``rollout.updated`` in.

Feedback is ground truth: it is published with ``acks=all`` and a short deadline, and the caller
is told 503 when the broker does not acknowledge, so nothing is lost silently.

``rollout.updated`` is followed without a consumer group: every gateway instance must see every
update (a group would share them out), and a gateway starting fresh needs only what comes next
(it bootstraps from the deployer's snapshot). Events are decoded with ``parse_event`` and applied
to the ``RouteBook``; a table that names versions we hold no serving details for triggers a
re-fetch from the deployer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from fleet_core.broker import kafka_client_kwargs
from fleet_core.errors import Unavailable
from fleet_core.events import (
    AuditRecorded,
    EventDecodeError,
    InferenceFeedback,
    OutcomeRecorded,
    RolloutUpdated,
    Topic,
    make_event,
    parse_event,
)
from fleet_core.log import get_logger
from fleet_gateway.metrics import GatewayMetrics
from fleet_gateway.routing import RouteBook

log = get_logger(__name__)

SOURCE = "fleet-gateway"


class FeedbackPublisher:
    """Publishes ``inference.feedback`` and ``outcome.recorded`` and waits for the broker's
    acknowledgement."""

    def __init__(self, servers: list[str], *, timeout_s: float) -> None:
        self._servers = servers
        self._timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **kafka_client_kwargs(self._servers),
                    acks="all",
                    request_timeout_ms=int(self._timeout_s * 1000),
                )
                try:
                    await producer.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def publish(self, feedback: InferenceFeedback | OutcomeRecorded) -> str:
        """The event id once acknowledged; ``Unavailable`` (503) when the broker did not take it."""
        if isinstance(feedback, OutcomeRecorded):
            topic, what = Topic.OUTCOME_RECORDED, "outcome"
            event = make_event(Topic.OUTCOME_RECORDED, feedback, source=SOURCE, subject=feedback.model)
        else:
            topic, what = Topic.INFERENCE_FEEDBACK, "feedback"
            event = make_event(Topic.INFERENCE_FEEDBACK, feedback, source=SOURCE, subject=feedback.model)
        try:
            async with asyncio.timeout(self._timeout_s):
                producer = await self._ensure()
                await producer.send_and_wait(topic.value, event.to_bytes(), key=feedback.model.encode())
        except Exception as exc:
            log.warning(f"{what} not acknowledged by the broker", error=f"{type(exc).__name__}: {exc}")
            raise Unavailable(
                f"the event broker did not acknowledge the {what}; nothing was recorded, retry later",
                headers={"Retry-After": "2"},
            ) from exc
        return event.id

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await producer.stop()


class AuditPublisher:
    """Sends the gateway's refused attempts (401/403) as ``audit.recorded``, for the platform's
    audit log in the registry. Never in a request's way: entries wait in a bounded queue that a
    background task drains; when the queue is full or the broker is away they are dropped and
    counted (``fleet_gateway_audit_dropped_total``), as inference logs are shed."""

    def __init__(self, servers: list[str], metrics: GatewayMetrics, *, max_queued: int = 10_000) -> None:
        self._servers = servers
        self._metrics = metrics
        self._queue: asyncio.Queue[AuditRecorded] = asyncio.Queue(maxsize=max_queued)
        self._task: asyncio.Task[None] | None = None

    async def record(self, entry: AuditRecorded) -> None:
        """The audit sink (``app.state.audit_sink``): queue it, or drop it when full."""
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self._metrics.audit_dropped.inc()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gateway-audit")

    async def _run(self) -> None:
        producer: AIOKafkaProducer | None = None
        try:
            while True:
                entry = await self._queue.get()
                event = make_event(Topic.AUDIT_RECORDED, entry, source=SOURCE, subject=entry.actor)
                try:
                    if producer is None:
                        producer = AIOKafkaProducer(**kafka_client_kwargs(self._servers), acks="all")
                        await producer.start()
                    await producer.send_and_wait(
                        Topic.AUDIT_RECORDED.value, event.to_bytes(), key=entry.actor.encode()
                    )
                except Exception as exc:  # broker away: drop this entry, retry the connection next time
                    self._metrics.audit_dropped.inc()
                    log.warning("audit entry dropped", error=f"{type(exc).__name__}: {exc}")
                    if producer is not None:
                        with contextlib.suppress(Exception):
                            await producer.stop()
                        producer = None
                    await asyncio.sleep(1.0)
        finally:
            if producer is not None:
                with contextlib.suppress(Exception):
                    await producer.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def feedback_now(
    *, request_id: str, model: str, labels: list[Any], version: int | None, source: str | None
) -> InferenceFeedback:
    return InferenceFeedback(
        request_id=request_id,
        model=model,
        version=version,
        labels=labels,
        source=source,
        timestamp=datetime.now(UTC),
    )


class RolloutFollower:
    """Applies ``rollout.updated`` route tables as they are published (no consumer group)."""

    def __init__(
        self,
        servers: list[str],
        book: RouteBook,
        metrics: GatewayMetrics,
        *,
        on_unknown_versions: Callable[[str], Awaitable[None]],
        max_backoff_s: float = 10.0,
    ) -> None:
        self._servers = servers
        self._book = book
        self._metrics = metrics
        self._on_unknown_versions = on_unknown_versions
        self._max_backoff_s = max_backoff_s
        self._task: asyncio.Task[None] | None = None
        self.assigned = asyncio.Event()
        """Set once the consumer holds its partitions (tests wait for it before publishing)."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rollout-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def apply(self, raw: bytes) -> RolloutUpdated | None:
        """Decode and apply one message; None for a poison message (logged, skipped)."""
        try:
            event = parse_event(Topic.ROLLOUT_UPDATED, raw)
        except EventDecodeError as exc:
            self._metrics.route_updates.labels("event", "invalid").inc()
            log.warning("skipping an invalid rollout.updated message", error=str(exc)[:500])
            return None
        update: RolloutUpdated = event.data
        applied = self._book.apply_table(update.routes)
        self._metrics.route_updates.labels("event", "applied" if applied else "stale").inc()
        log.info(
            "route table from rollout.updated",
            model=update.model,
            revision=update.routes.revision,
            phase=update.phase,
            applied=applied,
        )
        return update

    async def _handle(self, raw: bytes) -> None:
        update = self.apply(raw)
        if update is not None and (
            not self._book.knows(update.model) or self._book.missing_versions(update.model)
        ):
            await self._on_unknown_versions(update.model)

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            consumer = AIOKafkaConsumer(
                Topic.ROLLOUT_UPDATED.value,
                **kafka_client_kwargs(self._servers),
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="latest",
                metadata_max_age_ms=5000,
            )
            try:
                await consumer.start()
                backoff = 0.2
                while True:
                    batch = await consumer.getmany(timeout_ms=500)
                    if consumer.assignment():
                        self.assigned.set()
                    for messages in batch.values():
                        for message in messages:
                            await self._handle(message.value or b"")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.assigned.clear()
                log.warning("rollout.updated consumer failed; reconnecting", error=str(exc), retry_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()
