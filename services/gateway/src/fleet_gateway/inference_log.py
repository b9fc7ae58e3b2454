"""``inference.logged``: a bounded queue drained in batches; it never blocks or fails a prediction.

A request only appends a small record to the queue (``submit``, never awaits). A background task
takes up to ``batch_size`` records, waiting ``linger_ms`` for a batch to fill, turns them into
CloudEvents with PII fields, the caller and the routing key replaced by a salted hash, and hands
the batch to a ``LogTransport`` (Kafka, ``acks=1``). When the queue is full the new record is
shed; when the broker refuses a batch the batch is shed; both are counted
(``fleet_gateway_inference_logs_shed_total``) and the transport is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from fleet_core.broker import kafka_client_kwargs
from fleet_core.events import InferenceLogged, Topic, make_event
from fleet_core.log import get_logger
from fleet_core.privacy import PiiHasher
from fleet_gateway.metrics import GatewayMetrics

log = get_logger(__name__)

SOURCE = "fleet-gateway"


@dataclass(slots=True)
class LogRecord:
    """What a request leaves behind for the log; turned into an event off the request path."""

    request_id: str
    model: str
    version: int
    arm: str
    rows: list[dict[str, Any]]
    outputs: list[Any] | None
    latency_ms: float
    status: str
    status_code: int
    timestamp: datetime
    pii: frozenset[str] = frozenset()
    error: str | None = None
    caller: str | None = None
    routing_key: str | None = None


class LogTransport(Protocol):
    """Sends one batch of (key, value) messages; raises when the batch was not acknowledged."""

    async def start(self) -> None: ...

    async def send_batch(self, messages: list[tuple[bytes, bytes]]) -> None: ...

    async def close(self) -> None: ...


class KafkaLogTransport:
    """aiokafka producer for ``inference.logged``: ``acks=1`` and a linger, since these are logs."""

    def __init__(self, servers: list[str], *, linger_ms: int, timeout_s: float = 10.0) -> None:
        self._servers = servers
        self._linger_ms = linger_ms
        self._timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            **kafka_client_kwargs(self._servers),
            acks=1,
            linger_ms=self._linger_ms,
            request_timeout_ms=int(self._timeout_s * 1000),
            max_batch_size=1 << 20,
        )
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._producer = producer

    async def send_batch(self, messages: list[tuple[bytes, bytes]]) -> None:
        if self._producer is None:
            raise ConnectionError("the inference log producer is not connected")
        producer = self._producer
        async with asyncio.timeout(self._timeout_s):
            futures = [await producer.send(Topic.INFERENCE_LOGGED.value, v, key=k) for k, v in messages]
            await asyncio.gather(*futures)

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await producer.stop()


class InferenceLogSink:
    """The bounded queue and the background sender."""

    def __init__(
        self,
        transport: LogTransport,
        metrics: GatewayMetrics,
        *,
        queue_size: int,
        batch_size: int,
        linger_ms: int,
        pii_salt: str,
        max_backoff_s: float = 10.0,
    ) -> None:
        self._transport = transport
        self._metrics = metrics
        self._queue: asyncio.Queue[LogRecord] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._linger_s = linger_ms / 1000
        self.hasher = PiiHasher(pii_salt)
        self._max_backoff_s = max_backoff_s
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self._backoff = 0.2

    # ------------------------------------------------------------------ request path

    def submit(self, record: LogRecord) -> bool:
        """Queue a record; False (and counted) when it had to be shed. Never blocks."""
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self._metrics.shed("queue_full")
            return False
        return True

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # ------------------------------------------------------------------ background

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="inference-log-sender")

    async def stop(self, drain_s: float = 2.0) -> None:
        """Give queued records ``drain_s`` to go out, then stop."""
        if self._task is None:
            return
        if self.connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_s):
                    await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        await self._transport.close()

    async def _connect(self) -> None:
        backoff = 0.2
        while not self.connected:
            try:
                await self._transport.start()
                self.connected = True
                log.info("inference log producer connected")
            except Exception as exc:
                log.warning(
                    "inference log producer cannot connect; retrying", error=str(exc), retry_s=backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)

    async def _run(self) -> None:
        await self._connect()
        while True:
            batch = [await self._queue.get()]
            if self._linger_s and self._queue.qsize() < self._batch_size - 1:
                await asyncio.sleep(self._linger_s)
            while len(batch) < self._batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            self._metrics.log_queue.set(self._queue.qsize())
            try:
                await self._send(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _send(self, batch: list[LogRecord]) -> None:
        try:
            messages = [self.encode(r) for r in batch]
        except Exception as exc:  # a record that cannot be encoded must not stop the sender
            log.error("inference log record could not be encoded", error=str(exc))
            self._metrics.shed("encode", len(batch))
            return
        try:
            await self._transport.send_batch(messages)
        except Exception as exc:
            self._metrics.shed("broker", len(batch))
            log.warning(
                "inference log batch shed: broker unavailable",
                records=len(batch),
                error=f"{type(exc).__name__}: {exc}",
                retry_s=self._backoff,
            )
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, self._max_backoff_s)
            return
        self._backoff = 0.2
        self._metrics.logs_sent.inc(len(batch))

    def encode(self, record: LogRecord) -> tuple[bytes, bytes]:
        """One record as its Kafka key (the model) and CloudEvent bytes, PII hashed."""
        payload = InferenceLogged(
            request_id=record.request_id,
            model=record.model,
            version=record.version,
            arm=record.arm,  # type: ignore[arg-type]
            inputs=self.hasher.filter_rows(record.rows, record.pii),
            outputs=record.outputs,
            latency_ms=record.latency_ms,
            status=record.status,  # type: ignore[arg-type]
            status_code=record.status_code,
            error=record.error,
            caller=self.hasher.hash(record.caller) if record.caller else None,
            # Often a user id: hashed like PII, so a key's requests still group without revealing it.
            routing_key=self.hasher.hash(record.routing_key) if record.routing_key else None,
            timestamp=record.timestamp,
        )
        event = make_event(Topic.INFERENCE_LOGGED, payload, source=SOURCE, subject=record.model)
        event.requestid = record.request_id
        return record.model.encode(), event.to_bytes()
