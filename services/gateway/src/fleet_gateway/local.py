"""Small pool models served inside the gateway process, so that a call does not cross to a replica.

A one-row call to a logistic regression costs ~0.05 ms in the model and ~1.5 ms in the Ray hop
around it (docs/performance.md): for such models the hop *is* the cost. ``LocalModels`` keeps the
busy small models of the shared pool loaded here too, within a byte budget, and ``LocalBackend``
answers from them; everything else, and every model until it is loaded here, goes to Ray as
before. The pool stays the model's home: placement, hot spread, autoscaling and dedicated
deployments are unchanged, and a local copy is only ever a cache of it (ADR 0035).

What may be served here (``refusal``): a version placed in the shared pool (a dedicated deployment
asked for its own resources), of a library flavor (``sklearn``, ``onnx``; never ``python``, whose
code must not run in the process that faces the callers), whose artifact is at most
``max_model_bytes``. A model is loaded after ``promote_after`` calls (so a model called once stays
on the pool), one load at a time in the background (the request that triggers it goes to Ray), and
charged what ``load_measured`` measures, like a pool replica. When the budget is full, the least
recently used models that have been quiet for ``keep_s`` make room; if none has, nothing is
evicted and the newcomer stays on the pool, so uniform traffic over more models than fit does not
thrash. A local model whose calls take more than ``max_predict_ms`` of CPU on average is sent
back to the pool for an hour (its calls would hold the gateway's event loop); one idle for
``idle_s`` is unloaded.

While a model's versions are measured against each other (a canary or A/B split, a shadow arm:
``RouteBook.compares``), every call to any of them goes to the pool: the monitor compares the arms'
latencies, and a baseline answered here in 0.6 ms against a canary that still crosses to Ray in
10 ms is not a comparison of the two versions (a retrained canary was rolled back for exactly
that). Once one version takes all the traffic again, it is served here after ``promote_after``
calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel

from fleet_core.log import get_logger
from fleet_core.serving import ModelSpec, ServedVersion, loaded_estimate
from fleet_core.settings import FleetSettings
from fleet_gateway.backend import ModelFailed, ServingBackend, model_error

log = get_logger(__name__)

LOCAL_FLAVORS = frozenset({"sklearn", "onnx"})
INLINE_MAX_ROWS = 16
"""Calls of at most this many rows run on the event loop (a library model predicts a few rows in
well under a millisecond, less than a thread hop); larger ones in a worker thread."""
SLOW_AFTER_CALLS = 50
"""Calls on the event loop averaged before a local model may be judged too slow to run here."""
SLOW_RETRY_S = 3600.0
"""A model judged too slow is tried here again after this long (the box may have been busy)."""
SWEEP_S = 15.0
LOAD_RETRY_S = 60.0
"""A load that failed (the artifact store away, say) is tried again after this long."""
INF = float("inf")


@dataclass(frozen=True)
class LocalPolicy:
    budget_bytes: int
    """Bytes of models kept here (0: no local serving)."""
    max_model_bytes: int
    promote_after: int = 2
    max_predict_ms: float = 2.0
    keep_s: float = 10.0
    idle_s: float = 300.0


@dataclass
class _Local:
    spec: ModelSpec
    runtime: Any
    nbytes: int
    loaded_at: float
    last_call: float
    calls: int = 0
    inline_calls: int = 0
    """Calls run on the event loop; ``seconds`` is their CPU time."""
    seconds: float = 0.0

    @property
    def mean_ms(self) -> float | None:
        return self.seconds / self.inline_calls * 1000 if self.inline_calls else None


class LocalModelStats(BaseModel):
    key: str
    team: str
    flavor: str
    bytes: int
    calls: int
    mean_predict_ms: float | None
    idle_s: float


class LocalRefusal(BaseModel):
    key: str
    team: str
    reason: str


class LocalStats(BaseModel):
    """What this gateway process serves itself (``GET /v1/local-models``)."""

    enabled: bool
    budget_bytes: int
    loaded_bytes: int
    models: list[LocalModelStats]
    refused: list[LocalRefusal]
    loads: int
    evictions: int
    local_calls: int
    remote_calls: int


class LocalMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "fleet_gateway_model_calls",
            "Model calls by where they ran: in the gateway (local) or on Ray (remote)",
            ["where"],
            registry=registry,
        )
        self.loads = Counter(
            "fleet_gateway_local_loads",
            "Models loaded into the gateway, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.evictions = Counter(
            "fleet_gateway_local_evictions",
            "Local models unloaded, by reason (bytes, idle, slow, placement)",
            ["reason"],
            registry=registry,
        )
        self.models = Gauge("fleet_gateway_local_models", "Models loaded in the gateway", registry=registry)
        self.bytes = Gauge(
            "fleet_gateway_local_bytes", "Bytes charged to models loaded in the gateway", registry=registry
        )


class LocalModels:
    """The gateway's own LRU-by-bytes cache of small pool models (see the module docstring)."""

    def __init__(
        self, settings: FleetSettings, policy: LocalPolicy, metrics: LocalMetrics | None = None
    ) -> None:
        self._settings = settings
        self.policy = policy
        self._metrics = metrics
        self._loaded: OrderedDict[str, _Local] = OrderedDict()
        """Least recently used first."""
        self._seen: dict[str, int] = {}
        """Calls that went to Ray since the key was last considered for a load."""
        self._refused: dict[str, tuple[ModelSpec, str, float]] = {}
        """Keys not loaded here, why, and from when they may be tried again (inf: never)."""
        self._queue: asyncio.Queue[ModelSpec] | None = None
        self._queued: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._warm = False
        self.loads = 0
        self.evictions = 0
        self.local_calls = 0
        self.remote_calls = 0

    @property
    def enabled(self) -> bool:
        return self.policy.budget_bytes > 0

    @property
    def loaded_bytes(self) -> int:
        return sum(m.nbytes for m in self._loaded.values())

    def start(self) -> None:
        if not self.enabled:
            return
        self._queue = asyncio.Queue(maxsize=256)
        self._tasks = [
            asyncio.create_task(self._load_forever(), name="local-models-load"),
            asyncio.create_task(self._sweep_forever(), name="local-models-sweep"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._loaded.clear()
        self._gauges()

    # ------------------------------------------------------------------ the request path

    def refusal(self, served: ServedVersion) -> str | None:
        """Why ``served`` is never served here, or None."""
        spec = served.spec
        if served.placement.kind != "pool":
            return "a dedicated deployment"
        if spec.flavor not in LOCAL_FLAVORS:
            return f"flavor {spec.flavor!r} runs only on Ray"
        if spec.size_bytes > self.policy.max_model_bytes:
            limit = self.policy.max_model_bytes
            return f"artifact of {spec.size_bytes} bytes is over the local limit of {limit}"
        return None

    def get(self, served: ServedVersion, *, compared: bool = False) -> _Local | None:
        """The local copy of ``served``, marked as just used; None sends the call to Ray (and may
        queue a load). ``compared``: the model's versions are being measured against each other,
        so the call goes to Ray and queues nothing."""
        key = served.spec.key
        if compared:
            self._count_remote()
            return None
        local = self._loaded.get(key)
        if local is not None:
            if served.placement.kind == "pool" and local.spec.sha256 == served.spec.sha256:
                self._loaded.move_to_end(key)
                return local
            self._unload(key, "placement")  # redeployed with its own deployment: it is served there
        self._count_remote()
        if self._queue is None or key in self._queued or self._is_refused(key):
            return None
        seen = self._seen.get(key, 0) + 1
        if seen < self.policy.promote_after:
            self._seen[key] = seen
            return None
        self._seen.pop(key, None)
        reason = self.refusal(served)
        if reason is not None:
            # Placement can change (a redeploy with or without a quota): asked again after a while.
            self._refuse(
                served.spec, reason, retry_s=LOAD_RETRY_S if served.placement.kind != "pool" else INF
            )
            return None
        with contextlib.suppress(asyncio.QueueFull):  # a full queue: asked again on a later call
            self._queue.put_nowait(served.spec)
            self._queued.add(key)
        return None

    async def predict(self, local: _Local, rows: list[dict[str, Any]]) -> list[Any]:
        inline = len(rows) <= INLINE_MAX_ROWS
        try:
            if inline:
                # CPU time of this thread, not wall time: a GIL hand-off or another thread's work
                # in the middle of the call is not the model's cost on the event loop.
                start = time.thread_time()
                predictions = local.runtime.predict(rows)
                local.inline_calls += 1
                local.seconds += time.thread_time() - start
            else:
                predictions = await asyncio.to_thread(local.runtime.predict, rows)
        except Exception as exc:
            raise model_error(local.spec.key, exc) from exc
        local.calls += 1
        local.last_call = time.monotonic()
        self.local_calls += 1
        if self._metrics is not None:
            self._metrics.calls.labels("local").inc()
        if not isinstance(predictions, list) or len(predictions) != len(rows):
            got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
            raise ModelFailed(f"{local.spec.key} answered {got} predictions for {len(rows)} rows")
        mean_ms = local.mean_ms
        if (
            local.inline_calls >= SLOW_AFTER_CALLS
            and mean_ms is not None
            and mean_ms > self.policy.max_predict_ms
        ):
            self._unload(local.spec.key, "slow")
            limit_ms = self.policy.max_predict_ms
            self._refuse(
                local.spec,
                f"calls take {mean_ms:.2f} ms of CPU on average, over the local limit of {limit_ms:g} ms",
                retry_s=SLOW_RETRY_S,
            )
        return predictions

    # ------------------------------------------------------------------ loading and unloading

    async def _load_forever(self) -> None:
        assert self._queue is not None
        while True:
            spec = await self._queue.get()
            try:
                await self._load(spec)
            except Exception as exc:  # a model that cannot load here is still served by Ray
                reason = f"could not load in the gateway: {type(exc).__name__}: {exc}"
                self._refuse(spec, reason, retry_s=LOAD_RETRY_S)
                self._count_load("failed")
                log.warning("local load failed; the model stays on Ray", model=spec.key, error=str(exc))
            finally:
                self._queued.discard(spec.key)

    async def _load(self, spec: ModelSpec) -> None:
        from fleet_serving.memory import load_measured, release_memory, warm_up

        if spec.key in self._loaded:
            return
        budget = self.policy.budget_bytes
        expected = loaded_estimate(spec)
        if expected > budget:
            self._refuse(spec, f"expected to take {expected} bytes, over the local budget of {budget}")
            self._count_load("refused")
            return
        if not self._make_room(expected):
            self._count_load("no-room")  # asked again after promote_after more calls
            return
        if not self._warm:  # shared libraries in the process before the first charge (memory.warm_up)
            await warm_up(self._settings)
            self._warm = True
        runtime, nbytes = await load_measured(spec, self._settings)
        if nbytes > budget:
            del runtime
            release_memory()
            self._refuse(spec, f"took {nbytes} bytes at load, over the local budget of {budget}")
            self._count_load("refused")
            return
        if not self._make_room(nbytes):
            del runtime
            release_memory()
            self._count_load("no-room")
            return
        now = time.monotonic()
        self._loaded[spec.key] = _Local(spec, runtime, nbytes, loaded_at=now, last_call=now)
        self.loads += 1
        self._count_load("loaded")
        self._gauges()
        log.info("serving in the gateway", model=spec.key, bytes=nbytes, loaded_bytes=self.loaded_bytes)

    def _refuse(self, spec: ModelSpec, reason: str, *, retry_s: float = INF) -> None:
        self._refused[spec.key] = (spec, reason, time.monotonic() + retry_s)

    def _is_refused(self, key: str) -> bool:
        refused = self._refused.get(key)
        if refused is None:
            return False
        if refused[2] <= time.monotonic():
            del self._refused[key]
            return False
        return True

    def _make_room(self, incoming: int) -> bool:
        """Unload quiet least-recently-used models until ``incoming`` more bytes fit the budget; False
        (and nothing unloaded) when the quiet ones are not enough."""
        over = self.loaded_bytes + incoming - self.policy.budget_bytes
        if over <= 0:
            return True
        quiet_before = time.monotonic() - self.policy.keep_s
        victims: list[str] = []
        for key, local in self._loaded.items():
            if over <= 0:
                break
            if local.last_call <= quiet_before:
                victims.append(key)
                over -= local.nbytes
        if over > 0:
            return False
        for key in victims:
            self._unload(key, "bytes")
        return True

    def _unload(self, key: str, reason: str) -> None:
        if self._loaded.pop(key, None) is None:
            return
        self.evictions += 1
        if self._metrics is not None:
            self._metrics.evictions.labels(reason).inc()
        self._gauges()
        log.info("no longer served in the gateway", model=key, reason=reason)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            self.unload_idle()

    def unload_idle(self) -> list[str]:
        """Unload the models not called for ``idle_s`` (a version no longer routed ends here)."""
        idle_before = time.monotonic() - self.policy.idle_s
        idle = [key for key, local in self._loaded.items() if local.last_call <= idle_before]
        for key in idle:
            self._unload(key, "idle")
        return idle

    def _count_remote(self) -> None:
        self.remote_calls += 1
        if self._metrics is not None:
            self._metrics.calls.labels("remote").inc()

    def _count_load(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.loads.labels(outcome).inc()

    def _gauges(self) -> None:
        if self._metrics is not None:
            self._metrics.models.set(len(self._loaded))
            self._metrics.bytes.set(self.loaded_bytes)

    def stats(self, visible: Any = None) -> LocalStats:
        """Loaded and refused models, those of teams ``visible(team)`` allows when given."""
        now = time.monotonic()

        def shown(team: str) -> bool:
            return visible is None or bool(visible(team))

        return LocalStats(
            enabled=self.enabled,
            budget_bytes=self.policy.budget_bytes,
            loaded_bytes=self.loaded_bytes,
            models=[
                LocalModelStats(
                    key=key,
                    team=local.spec.team,
                    flavor=local.spec.flavor,
                    bytes=local.nbytes,
                    calls=local.calls,
                    mean_predict_ms=round(local.mean_ms, 4) if local.mean_ms is not None else None,
                    idle_s=round(now - local.last_call, 1),
                )
                for key, local in reversed(self._loaded.items())
                if shown(local.spec.team)
            ],
            refused=[
                LocalRefusal(key=key, team=spec.team, reason=reason)
                for key, (spec, reason, _) in self._refused.items()
                if shown(spec.team)
            ],
            loads=self.loads,
            evictions=self.evictions,
            local_calls=self.local_calls,
            remote_calls=self.remote_calls,
        )


class LocalBackend:
    """``LocalModels`` in front of another backend: a model loaded here answers here, any other
    call goes on to ``inner`` (and may get its model loaded here for the next ones).
    ``compares(model)`` tells a model whose versions are being measured against each other: all
    of its calls go on to ``inner``."""

    def __init__(
        self, inner: ServingBackend, models: LocalModels, compares: Callable[[str], bool] | None = None
    ) -> None:
        self.inner = inner
        self.models = models
        self._compares = compares or (lambda model: False)

    async def start(self) -> None:
        await self.inner.start()
        self.models.start()

    async def close(self) -> None:
        await self.models.close()
        await self.inner.close()

    async def ready(self) -> tuple[bool, str]:
        return await self.inner.ready()

    async def predict(self, served: ServedVersion, rows: list[dict[str, Any]]) -> list[Any]:
        local = self.models.get(served, compared=self._compares(served.spec.model))
        if local is not None:
            return await self.models.predict(local, rows)
        return await self.inner.predict(served, rows)
