"""Adaptive micro-batching: concurrent requests to one served version share one model call.

A small model's prediction costs microseconds; what a request pays for is the call into the
replica's process (serialisation, the handle's router, a network hop). ``BatchingBackend`` wraps
a ``ServingBackend`` and, per served version, gathers the requests that arrive while that
version's calls are busy into one call (rows concatenated in arrival order, predictions split
back by count), so under load the gateway makes a few large calls instead of many small ones.

When each batch is sent (its *flush cause*, counted in ``fleet_gateway_batch_flushes``):

- ``idle``: no call of this version is running and nothing waits. The request goes at once and
  alone, so a lone request (one connection, a quiet model) never waits for company.
- ``delay``: a call is running but another may start (fewer than ``max_inflight``): the requests
  that arrive are gathered for ``max_delay_ms``, then sent together.
- ``drained``: a running call returned while requests were waiting (every slot busy, or none
  left running).
- ``full``: the waiting requests reached ``max_rows`` rows; they go even if every slot is busy.
- ``large``: the request alone has ``max_rows`` rows or more; it is sent on its own.

So a request waits at most ``max_delay_ms`` when a call slot is free, and otherwise until one of
the version's running calls returns: the wait is back-pressure from the model, never longer than
the call it queues behind.

Rows are validated per request before they get here (``DataPlane``), so one request's bad input
never reaches a batch. If a batched call still fails with the model's own error (the model refused
a value, or raised) every request of that batch is retried alone, so only the request that caused
it gets the error (``fleet_gateway_batch_isolations``); an unavailable model fails the batch as a
whole, since resending each request would only multiply the load.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter as CounterOf
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from fleet_core.errors import InvalidInput
from fleet_core.events import BatchSettings
from fleet_core.placement import PoolView, replica_directive, replica_order, spread
from fleet_core.serving import Placement, ServedVersion
from fleet_gateway.backend import ModelFailed, PoolBackend, ServingBackend

FLUSH_CAUSES = ("idle", "drained", "full", "delay", "large")
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """How one served version's requests are gathered; ``max_rows`` 1 turns batching off."""

    max_rows: int = 32
    max_delay_ms: float = 5.0
    max_inflight: int = 2

    @property
    def enabled(self) -> bool:
        return self.max_rows > 1

    def overridden(self, settings: BatchSettings | None) -> BatchPolicy:
        """This policy with a model's own settings (``PUT /v1/routes/{model}/batching``) on top."""
        if settings is None:
            return self
        return BatchPolicy(
            max_rows=self.max_rows if settings.max_rows is None else settings.max_rows,
            max_delay_ms=self.max_delay_ms if settings.max_delay_ms is None else settings.max_delay_ms,
            max_inflight=self.max_inflight if settings.max_inflight is None else settings.max_inflight,
        )


class BatchMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.flushes = Counter(
            "fleet_gateway_batch_flushes",
            "Model calls the batcher made, by why the batch was sent (idle, drained, full, delay, large)",
            ["cause"],
            registry=registry,
        )
        self.rows = Histogram(
            "fleet_gateway_batch_rows",
            "Rows per model call the batcher made",
            buckets=ROW_BUCKETS,
            registry=registry,
        )
        self.requests = Histogram(
            "fleet_gateway_batch_requests",
            "Requests gathered into one model call",
            buckets=ROW_BUCKETS,
            registry=registry,
        )
        self.models = Histogram(
            "fleet_gateway_batch_models",
            "Models whose rows went in one call to a pool replica",
            buckets=ROW_BUCKETS,
            registry=registry,
        )
        self.isolations = Counter(
            "fleet_gateway_batch_isolations",
            "Batched calls that failed with a model error and were retried one request at a time",
            registry=registry,
        )
        self._flush = {cause: self.flushes.labels(cause) for cause in FLUSH_CAUSES}

    def batch(self, cause: str, requests: int, rows: int) -> None:
        self._flush[cause].inc()
        self.requests.observe(requests)
        self.rows.observe(rows)

    def flush_counts(self) -> dict[str, float]:
        return {cause: counter._value.get() for cause, counter in self._flush.items()}


@dataclass(slots=True)
class _Waiting:
    rows: list[dict[str, Any]]
    future: asyncio.Future[list[Any]]
    served: ServedVersion | None = None
    """The version asked for, in a pool lane (which carries several)."""


@dataclass(slots=True)
class _Lane:
    """One queue: a served version's, or a pool replica's (``replica`` set: any of its models)."""

    key: tuple[str, str, str]
    served: ServedVersion
    policy: BatchPolicy
    replica: str | None = None
    waiting: list[_Waiting] = field(default_factory=list)
    waiting_rows: int = 0
    inflight: int = 0
    timer: asyncio.TimerHandle | None = None


class BatchingBackend:
    """A ``ServingBackend`` that batches concurrent calls to the same served version.

    ``policy_for(served)`` says how a version is batched (``None`` or ``max_rows`` 1: not at all).
    A pool version batched by ``pool_policy`` (the default one: a model with its own settings is
    batched alone by them) shares a lane with every model going to the same pool replica, when
    the inner backend can call a replica with several models (``PoolBackend``)."""

    def __init__(
        self,
        inner: ServingBackend,
        metrics: BatchMetrics,
        policy_for: Callable[[ServedVersion], BatchPolicy | None],
        *,
        pool_policy: BatchPolicy | None = None,
    ) -> None:
        self.inner = inner
        self.metrics = metrics
        self._policy_for = policy_for
        self._pool_policy = pool_policy
        self._pool = inner if isinstance(inner, PoolBackend) and pool_policy is not None else None
        self._lanes: dict[tuple[str, str, str], _Lane] = {}
        self._running: CounterOf[tuple[str, str]] = CounterOf()
        """Pool calls running per (model key, replica): what makes a model hot at a replica."""
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        await self.inner.close()

    async def ready(self) -> tuple[bool, str]:
        return await self.inner.ready()

    async def predict(self, served: ServedVersion, rows: list[dict[str, Any]]) -> list[Any]:
        policy = self._policy_for(served)
        if policy is None or not policy.enabled:
            return await self.inner.predict(served, rows)
        placement = served.placement
        if self._pool is not None and policy == self._pool_policy and placement.kind == "pool":
            view = self._pool.pool_view(placement)
            names = view.replica_names() if view is not None else ()
            if view is not None and names:
                return await self._pool_predict(served, rows, policy, view, names)
        key = (placement.app, placement.deployment, served.spec.key)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(key, served, policy)
        else:
            # Same version at the same place; the newest route update's copy is the one to call.
            lane.served, lane.policy = served, policy
        return await self._enqueue(lane, _Waiting(rows, asyncio.get_running_loop().create_future()))

    async def _pool_predict(
        self,
        served: ServedVersion,
        rows: list[dict[str, Any]],
        policy: BatchPolicy,
        view: PoolView,
        names: Sequence[str],
    ) -> list[Any]:
        """Into the lane of the pool replica this model goes to: its first in rendezvous order, or
        (while this gateway has ``hot_ongoing`` calls with its rows running there) the next, as the
        router would place it (``fleet_core.placement``)."""
        model = served.spec.key
        running = self._running
        chosen = spread(
            replica_order(model, names),
            hot=lambda r: running[(model, r)] >= view.hot_ongoing,
            full=lambda r: False,
            max_replicas=view.max_replicas_per_model,
        )
        replica = min(chosen, key=lambda r: running[(model, r)])
        placement = served.placement
        key = (placement.app, placement.deployment, replica_directive(replica))
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(key, served, policy, replica=replica)
        return await self._enqueue(lane, _Waiting(rows, asyncio.get_running_loop().create_future(), served))

    async def _enqueue(self, lane: _Lane, waiting: _Waiting) -> list[Any]:
        policy, rows, future = lane.policy, waiting.rows, waiting.future
        if len(rows) >= policy.max_rows:
            self._send(lane, [waiting], "large")
            return await future
        lane.waiting.append(waiting)
        lane.waiting_rows += len(rows)
        if lane.inflight == 0 and len(lane.waiting) == 1:
            self._flush(lane, "idle")
        elif lane.waiting_rows >= policy.max_rows:
            self._flush(lane, "full")
        elif lane.timer is None and lane.inflight < policy.max_inflight:
            lane.timer = asyncio.get_running_loop().call_later(
                policy.max_delay_ms / 1000, self._on_delay, lane
            )
        return await future

    def _on_delay(self, lane: _Lane) -> None:
        lane.timer = None
        if lane.waiting and lane.inflight < lane.policy.max_inflight:
            self._flush(lane, "delay")

    # ------------------------------------------------------------------ sending

    def _flush(self, lane: _Lane, cause: str) -> None:
        if lane.timer is not None:
            lane.timer.cancel()
            lane.timer = None
        batch, lane.waiting, lane.waiting_rows = lane.waiting, [], 0
        if batch:
            self._send(lane, batch, cause)

    def _send(self, lane: _Lane, batch: list[_Waiting], cause: str) -> None:
        lane.inflight += 1
        if lane.replica is not None:  # running from now: the next request placed sees it
            for model in {w.served.spec.key for w in batch if w.served is not None}:
                self._running[(model, lane.replica)] += 1
        task = asyncio.create_task(self._call(lane, batch, cause))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, lane: _Lane, batch: list[_Waiting], cause: str) -> None:
        if lane.replica is not None:
            try:
                await self._call_pool(lane, lane.replica, batch, cause)
            finally:
                self._done(lane)
            return
        served = lane.served
        try:
            if len(batch) == 1:
                self.metrics.batch(cause, 1, len(batch[0].rows))
                await self._answer(batch[0], served)
                return
            rows = [row for waiting in batch for row in waiting.rows]
            self.metrics.batch(cause, len(batch), len(rows))
            try:
                predictions = await self.inner.predict(served, rows)
                if not isinstance(predictions, list) or len(predictions) != len(rows):
                    got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
                    raise ModelFailed(f"{served.spec.key} answered {got} predictions for {len(rows)} rows")
            except (InvalidInput, ModelFailed):
                # Whose rows broke it is unknown: each request again alone, so only its own fails.
                self.metrics.isolations.inc()
                await asyncio.gather(*(self._answer(waiting, served) for waiting in batch))
                return
            except BaseException as exc:
                _fail_all(batch, exc)
                return
            _split(batch, predictions)
        finally:
            self._done(lane)

    def _done(self, lane: _Lane) -> None:
        """One of the lane's calls returned: send what waits, or drop an idle lane."""
        lane.inflight -= 1
        if (lane.waiting and lane.timer is None) or (lane.waiting and lane.inflight == 0):
            self._flush(lane, "drained")
        elif lane.inflight == 0 and self._lanes.get(lane.key) is lane:
            del self._lanes[lane.key]

    async def _call_pool(self, lane: _Lane, replica: str, batch: list[_Waiting], cause: str) -> None:
        """One call to a pool replica with every model's rows of ``batch``, grouped by model in
        arrival order; a model's own error stays with its requests (isolated if several)."""
        assert self._pool is not None
        groups: dict[str, list[_Waiting]] = {}
        for waiting in batch:
            assert waiting.served is not None
            groups.setdefault(waiting.served.spec.key, []).append(waiting)
        payload = [
            (waitings[0].served, [row for w in waitings for row in w.rows]) for waitings in groups.values()
        ]
        self.metrics.batch(cause, len(batch), sum(len(rows) for _, rows in payload))
        self.metrics.models.observe(len(groups))
        placement = lane.served.placement
        running = self._running
        try:
            answers = await self._pool.predict_pool(placement, replica, payload)  # type: ignore[arg-type]
        except BaseException as exc:
            _fail_all(batch, exc)
            return
        finally:
            for model in groups:
                slot = (model, replica)
                running[slot] -= 1
                if running[slot] <= 0:
                    del running[slot]
        alone: list[_Waiting] = []
        for waitings, answer in zip(groups.values(), answers, strict=True):
            if isinstance(answer, BaseException):
                if len(waitings) > 1 and isinstance(answer, InvalidInput | ModelFailed):
                    alone.extend(waitings)  # whose rows broke it is unknown: each again alone
                else:
                    for waiting in waitings:
                        _settle(waiting.future, exc=answer)
                continue
            _split(waitings, answer)
        if alone:
            self.metrics.isolations.inc()
            await asyncio.gather(*(self._answer_pool(placement, replica, waiting) for waiting in alone))

    async def _answer_pool(self, placement: Placement, replica: str, waiting: _Waiting) -> None:
        assert self._pool is not None and waiting.served is not None
        try:
            (answer,) = await self._pool.predict_pool(placement, replica, [(waiting.served, waiting.rows)])
        except BaseException as exc:
            _settle(waiting.future, exc=exc)
            if not isinstance(exc, Exception):
                raise
            return
        if isinstance(answer, BaseException):
            _settle(waiting.future, exc=answer)
        else:
            _settle(waiting.future, result=answer)

    async def _answer(self, waiting: _Waiting, served: ServedVersion) -> None:
        try:
            result = await self.inner.predict(served, waiting.rows)
        except BaseException as exc:
            _settle(waiting.future, exc=exc)
            if not isinstance(exc, Exception):
                raise
        else:
            _settle(waiting.future, result=result)

    def lanes(self) -> int:
        """Versions with requests waiting or calls running (tests, introspection)."""
        return len(self._lanes)


def _split(batch: list[_Waiting], predictions: list[Any]) -> None:
    """Each request of a call its own predictions: as many as it sent rows, in order."""
    at = 0
    for waiting in batch:
        n = len(waiting.rows)
        _settle(waiting.future, result=predictions[at : at + n])
        at += n


def _fail_all(batch: list[_Waiting], exc: BaseException) -> None:
    """A call as a whole failed: every request of it gets that error (a cancellation goes on up)."""
    for waiting in batch:
        _settle(waiting.future, exc=exc)
    if not isinstance(exc, Exception):
        raise exc


def _settle(
    future: asyncio.Future[list[Any]], *, result: list[Any] | None = None, exc: BaseException | None = None
) -> None:
    """Answer one waiting request, unless it gave up (its client went away, it was cancelled)."""
    if future.done():
        return
    if exc is not None:
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)
    else:
        with contextlib.suppress(asyncio.InvalidStateError):
            future.set_result(result if result is not None else [])
