"""The Ray Serve deployments that host models, and the builders that turn fleet config into them.

- ``ModelPool``: many small versions share a few replicas. Each replica loads versions on demand
  through ``serve.multiplexed`` (keyed ``name:version``), keeps them within a memory budget (LRU by
  the bytes each measured at load, ``fleet_serving.cache``) and unloads a version nobody has called
  for ``idle_unload_s``. Which versions it may load is the pool's catalog in Ray's KV store; its
  ``user_config`` names the catalog by digest (``fleet_serving.catalog``), so adding a version
  reconfigures live replicas instead of restarting them.
- ``DedicatedModel``: one version with its own resources and autoscaling; concurrent requests are
  micro-batched into one model call. A ``python``-flavor version (publisher code) only ever runs
  here, with no store credentials in its environment and its archive handed over by the deployer.

Both honour the calling convention in ``fleet_core.serving``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ray import serve
from ray.serve.config import RequestRouterConfig
from ray.serve.deployment import Application

from fleet_core.schemas import JsonValue, ResourceQuota
from fleet_core.serving import (
    DEDICATED_DEPLOYMENT,
    POOL_DEPLOYMENT,
    ModelSpec,
    PoolConfig,
    PoolSizing,
    loaded_estimate,
    model_budget,
)
from fleet_serving import catalog
from fleet_serving.cache import ModelLedger
from fleet_serving.errors import ModelTooLargeError, UnknownModelError, UntrustedArtifactError, error_wire
from fleet_serving.loading import load_model, load_verified
from fleet_serving.memory import load_measured, process_rss, release_memory, warm_up
from fleet_serving.pool_router import POOL_ROUTER_PATH
from fleet_serving.runtimes import Runtime
from fleet_serving.settings import ServingSettings

log = logging.getLogger("ray.serve")

MULTIPLEX_ATTR = "__serve_multiplex_wrapper"
"""Where ``serve.multiplexed`` keeps its per-replica model cache (ray/serve/api.py)."""
SPOT_RESOURCE = "fleet_spot"
"""Custom resource a node advertises (``ray start --resources='{"fleet_spot": 1000}'``) to take
``capacity_class="spot"`` replicas. Requested only when the cluster has it, so a single-node
cluster without it still schedules them (on whatever capacity it has)."""
SPOT_RESOURCE_PER_REPLICA = 0.001
DEFAULT_REPLICA_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"}
"""Throughput mode doubles handle throughput (DESIGN §4). It also turns on direct ingress (an HTTP
server in every replica, and a 30 s drain on every replica stop); ModelFleet calls replicas only
through handles, so direct ingress is switched back off."""
GRACEFUL_SHUTDOWN = {"graceful_shutdown_wait_loop_s": 0.5, "graceful_shutdown_timeout_s": 10.0}
"""Predictions take milliseconds: a stopping replica drains in-flight calls quickly, so it need not
wait Serve's default 2 s poll / 20 s cap (which makes removals and scale-downs slow)."""
REPLICA_LOGGING = {"enable_access_log": False}
"""The gateway logs every request itself (structured, with its request id); Serve's access log line
per call in the replica repeated it and took ~8 % of a pool replica's CPU under traffic spread over
300 models (py-spy, 2026-12-02). Errors are still logged."""
MODEL_IDS_PUSH_INTERVAL_S = 1.0
"""How often a pool replica reports its loaded model ids (Serve's default: every 0.1 s, setting one
gauge per loaded model each time: ~11 % of a replica's CPU with 300 models loaded, growing with
them). The pool's router places models by rendezvous hashing, not by these reports; a load is
still reported early (Serve flags it), only up to a second later."""
BATCH_MAX_SIZE = 64
BATCH_WAIT_S = 0.005


def replica_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """Environment of a replica: the serving defaults, then what the deployer passes (FLEET_*)."""
    return {**DEFAULT_REPLICA_ENV, **(env or {})}


ISOLATED_ENV_PREFIXES = ("FLEET_HOME", "FLEET_MODE", "FLEET_LOG_", "FLEET_SERVING_", "RAY_")
"""All a replica running publisher code (``python`` flavor) is handed of the deployer's env."""
BLANKED_SECRETS = (
    "FLEET_S3_ACCESS_KEY",
    "FLEET_S3_SECRET_KEY",
    "FLEET_JWT_SECRET",
    "FLEET_JWT_PREVIOUS_SECRETS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
"""Set empty for such a replica: Ray workers inherit their node's environment, and
``runtime_env`` can override a variable but not remove it."""


def isolated_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment of a replica that runs publisher code: no object-store (or any other)
    credentials. It needs none: the deployer hands it the verified archive."""
    kept = {k: v for k, v in (env or {}).items() if k.startswith(ISOLATED_ENV_PREFIXES)}
    return {**kept, **dict.fromkeys(BLANKED_SECRETS, "")}


ISOLATED_FLAVORS = frozenset({"python"})
"""Flavors that run publisher code: never in the shared pool, never with store credentials."""


def require_shareable(spec: ModelSpec) -> None:
    """Refuse to load publisher code into a process other teams' models share."""
    if spec.flavor in ISOLATED_FLAVORS:
        raise UntrustedArtifactError(
            f"{spec.key}: python-flavor models run only in their own deployment, never in the shared pool",
            field="flavor",
        )


class LoadedModelStats(BaseModel):
    """One version in a pool replica's cache."""

    key: str
    team: str | None = None
    bytes: int = 0
    """Charged at load: max(RSS delta of the load, artifact size, a 64 KiB floor)."""
    last_call_s_ago: float | None
    in_flight: int
    served: int = 0
    """Calls for the version this replica has answered since it started."""


class RefusedModelStats(BaseModel):
    """A version this replica measured larger than its whole model budget (not kept loaded)."""

    key: str
    team: str | None = None
    bytes: int


INLINE_MAX_ROWS = 16
"""Requests this small run on the replica's event loop: a library model predicts a few rows in
~0.1-0.3 ms, less than the hop to a worker thread and back. Larger ones, and custom ``python``
models whose cost we cannot know, run in a thread so the replica keeps accepting calls."""


async def run_predict(runtime: Runtime, rows: list[dict[str, JsonValue]]) -> list[JsonValue]:
    if len(rows) <= INLINE_MAX_ROWS and runtime.flavor != "python":
        return runtime.predict(rows)
    return await asyncio.to_thread(runtime.predict, rows)


class PoolReplicaStats(BaseModel):
    """What one pool replica holds right now (``ModelPool.stats``)."""

    replica_id: str
    actor_id: str
    configured: list[str]
    loaded: list[LoadedModelStats]
    """In LRU order: the first is the next to be evicted."""
    idle_unload_s: float
    unloads: int
    """Every unload: idle, no longer configured, or evicted."""
    budget_bytes: int | None = None
    """Bytes of loaded models this replica keeps (None: bounded by count only)."""
    loaded_bytes: int = 0
    max_models: int | None = None
    memory_reserved_bytes: int | None = None
    """Its Ray memory reservation (``ray_actor_options.memory``)."""
    baseline_rss_bytes: int | None = None
    """RSS when the replica started, before any model."""
    rss_bytes: int | None = None
    """RSS now."""
    evictions_by_bytes: int = 0
    evictions_by_count: int = 0
    evicted_bytes: int = 0
    refused: list[RefusedModelStats] = []


class DedicatedReplicaStats(BaseModel):
    """``DedicatedModel.stats``: the replica and the version it hosts."""

    replica_id: str
    actor_id: str
    model: str


@serve.deployment(name=POOL_DEPLOYMENT, max_ongoing_requests=32)
class ModelPool:
    """A replica that serves any configured version by its ``multiplexed_model_id``."""

    def __init__(
        self,
        max_models_per_replica: int = 1024,
        memory_bytes: int | None = None,
        model_budget_bytes: int | None = None,
    ) -> None:
        """``memory_bytes``: the replica's Ray memory reservation; the model budget derives from it
        (``PoolSizing.derived_budget_bytes`` of the RSS measured here, before any model) unless
        ``model_budget_bytes`` is given."""
        self._config = PoolConfig()
        self._catalog_digest: str | None = None
        self._settings = ServingSettings()
        self._memory_bytes = memory_bytes
        self._explicit_budget = model_budget_bytes
        self._baseline_rss: int | None = None
        self._ledger = ModelLedger(model_budget_bytes, max_models_per_replica)
        self._last_call: dict[str, float] = {}
        self._in_flight: Counter[str] = Counter()
        self._served: Counter[str] = Counter()
        self._unloads = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._push_interval_set = False

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """A new ``PoolCatalogRef``: its catalog is fetched if the digest changed, and takes effect
        for the next request; no restart. The first one (Serve applies it before the replica takes
        traffic) also measures the empty replica."""
        if self._baseline_rss is None:
            await self._measure_baseline()
        ref = catalog.PoolCatalogRef.model_validate(user_config)
        models = self._config.models
        if ref.digest != self._catalog_digest:
            models = await asyncio.to_thread(catalog.fetch, ref)
        self._config = PoolConfig(models=models, idle_unload_s=ref.idle_unload_s)
        self._catalog_digest = ref.digest
        self._ensure_sweeper()

    async def _measure_baseline(self) -> None:
        """Warm the runtimes up, then take the RSS every model's charge comes on top of; the
        derived budget is the reservation minus it (and the headroom)."""
        await warm_up(self._settings)
        self._baseline_rss = process_rss()
        if self._explicit_budget is None and self._memory_bytes is not None:
            self._ledger.budget_bytes = model_budget(self._memory_bytes, self._baseline_rss or 0)
        log.info(
            "pool replica baseline RSS %s bytes; model budget %s bytes",
            self._baseline_rss,
            self._ledger.budget_bytes,
        )

    @serve.multiplexed(max_num_models_per_replica=-1)  # bounded by the ledger (bytes, then count)
    async def _model(self, key: str) -> Runtime:
        """Load ``key``, first evicting LRU models until it fits. Serve calls this on a cache miss
        holding its cache lock, so no other load or unload runs meanwhile."""
        spec = self._config.models.get(key)
        if spec is None:
            raise UnknownModelError(f"model {key!r} is not served by this pool", field="model")
        self._slow_model_id_pushes()
        require_shareable(spec)
        ledger = self._ledger
        known = ledger.refused.get(key)
        if known is not None or not ledger.fits_alone(spec.size_bytes):
            # A load is charged at least its artifact size: this one cannot fit, so is not tried.
            raise self._too_large(spec, known or spec.size_bytes, measured=known is not None)
        expected = ledger.expected(key, loaded_estimate(spec))
        # Room is made before the load for what it is expected to take; an estimate over the whole
        # budget evicts nothing up front: the measurement decides whether it stays.
        made_room = expected if ledger.fits_alone(expected) else 0
        if made_room:
            await self._evict(made_room)
        runtime, nbytes = await load_measured(spec, self._settings)
        if not ledger.fits_alone(nbytes):
            del runtime
            release_memory()
            ledger.refuse(key, nbytes)
            raise self._too_large(spec, nbytes, measured=True)
        if nbytes > made_room:  # measured above the room made: make the rest
            await self._evict(nbytes)
        ledger.loaded(key, nbytes)
        return runtime

    def _slow_model_id_pushes(self) -> None:
        """Report loaded model ids every ``MODEL_IDS_PUSH_INTERVAL_S`` instead of Serve's 0.1 s (its
        multiplex wrapper exists once the first load runs; private Serve API, checked by a test)."""
        if self._push_interval_set:
            return
        wrapper = getattr(self, MULTIPLEX_ATTR, None)
        pusher = getattr(wrapper, "metrics_pusher", None)
        name = getattr(wrapper, "_PUSH_MULTIPLEXED_MODEL_IDS_TASK_NAME", None)
        push = getattr(wrapper, "_push_model_ids_info", None)
        if pusher is None or name is None or push is None:
            return
        pusher.register_or_update_task(name, push, MODEL_IDS_PUSH_INTERVAL_S)
        self._push_interval_set = True

    def _too_large(self, spec: ModelSpec, nbytes: int, *, measured: bool) -> ModelTooLargeError:
        budget = self._ledger.budget_bytes or 0
        how = "measured at load" if measured else "its artifact alone"
        log.warning("%s refused: %d bytes (%s) over a %d-byte model budget", spec.key, nbytes, how, budget)
        return ModelTooLargeError(
            f"model {spec.key} takes {nbytes / 2**20:.1f} MB ({how}), more than this pool replica's "
            f"whole {budget / 2**20:.1f} MB model budget: it is not kept in the shared pool and needs a "
            "dedicated deployment (deploy it with a quota)",
            field="model",
        )

    async def _evict(self, incoming_bytes: int, incoming: int = 1) -> list[str]:
        """Unload least-recently-used models with no call in flight until ``incoming`` more models
        of ``incoming_bytes`` fit; the caller holds Serve's cache lock."""
        wrapper = getattr(self, MULTIPLEX_ATTR, None)
        if wrapper is None:
            return []
        self._ledger.forget_missing(wrapper.models)
        evictions, fits = self._ledger.plan(
            wrapper.models, incoming_bytes, lambda k: self._in_flight[k] > 0, incoming=incoming
        )
        for eviction in evictions:
            wrapper.models.move_to_end(eviction.key, last=False)
            await wrapper.unload_model_lru()
            self._ledger.evicted(eviction)
            self._last_call.pop(eviction.key, None)
        if evictions:
            self._unloads += len(evictions)
            release_memory()
            # Tell the router this replica no longer holds them (Serve does this after its own evictions).
            wrapper._push_multiplexed_replica_info = True
            log.info(
                "evicted %s (%d bytes) for %d incoming bytes",
                [e.key for e in evictions],
                sum(e.bytes for e in evictions),
                incoming_bytes,
            )
        if not fits:
            log.warning(
                "over the model budget: %d bytes loaded + %d incoming > %s; the rest have calls in flight",
                self._ledger.loaded_bytes,
                incoming_bytes,
                self._ledger.budget_bytes,
            )
        return [e.key for e in evictions]

    async def predict(self, rows: list[dict[str, JsonValue]]) -> list[JsonValue]:
        """Predict with the version named by the request's ``multiplexed_model_id``."""
        key = serve.get_multiplexed_model_id()
        if not key:
            raise UnknownModelError(
                "no model key: call the pool with handle.options(multiplexed_model_id='name:version')",
                field="model",
            )
        return await self._predict_one(key, rows)

    async def predict_batch(
        self, groups: list[tuple[str, list[dict[str, JsonValue]]]]
    ) -> list[dict[str, Any]]:
        """Several models' rows in one call (the gateway's pool batcher): for each ``(key, rows)``
        either ``{"predictions": [...]}`` or ``{"error": {status, kind, detail, field}}``, so one
        model's failure stays its own. Models load one at a time (Serve's cache lock), while
        the loaded ones predict."""
        results = await asyncio.gather(
            *(self._predict_one(key, rows) for key, rows in groups), return_exceptions=True
        )
        out: list[dict[str, Any]] = []
        for result in results:
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                out.append({"error": error_wire(result)})
            else:
                out.append({"predictions": result})
        return out

    async def _predict_one(self, key: str, rows: list[dict[str, JsonValue]]) -> list[JsonValue]:
        if key not in self._config.models:
            raise UnknownModelError(
                f"model {key!r} is not served by this pool ({len(self._config.models)} configured)",
                field="model",
            )
        self._ensure_sweeper()
        self._in_flight[key] += 1
        self._last_call[key] = time.monotonic()
        try:
            runtime = await self._model(key)
            result = await run_predict(runtime, rows)
            self._served[key] += 1
            return result
        finally:
            self._in_flight[key] -= 1
            self._last_call[key] = time.monotonic()

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            interval = min(max(self._config.idle_unload_s / 4, 0.25), 5.0)
            await asyncio.sleep(interval)
            try:
                await self.unload_idle()
            except Exception:  # the sweeper must outlive one bad unload
                log.exception("idle unload failed")

    async def unload_idle(self) -> list[str]:
        """Unload versions idle for ``idle_unload_s`` (and versions no longer configured), then
        evict by bytes if the replica went over its budget while calls were in flight.

        The multiplex cache is in LRU order, so evicting from its front while the front is idle
        unloads exactly the idle versions, through Serve's own ``unload_model_lru``.
        """
        wrapper = getattr(self, MULTIPLEX_ATTR, None)
        if wrapper is None:
            return []
        unloaded: list[str] = []
        now = time.monotonic()
        lock = getattr(wrapper, "_model_cache_lock", None) or contextlib.nullcontext()
        async with lock:
            for key in [k for k in wrapper.models if k not in self._config.models]:
                if not self._in_flight[key]:
                    wrapper.models.move_to_end(key, last=False)
                    await wrapper.unload_model_lru()
                    unloaded.append(key)
            while wrapper.models:
                key = next(iter(wrapper.models))
                last = self._last_call.get(key, now)
                if self._in_flight[key] or now - last < self._config.idle_unload_s:
                    break
                await wrapper.unload_model_lru()
                unloaded.append(key)
            for key in unloaded:
                self._last_call.pop(key, None)
                self._ledger.unloaded(key)
            if unloaded:
                self._unloads += len(unloaded)
                release_memory()
                # Tell the router this replica no longer holds them (Serve does this after its own evictions).
                wrapper._push_multiplexed_replica_info = True
                log.info("unloaded idle models %s", unloaded)
            if self._ledger.over_budget:
                unloaded += await self._evict(0, incoming=0)
        return unloaded

    async def stats(self) -> PoolReplicaStats:
        """The versions this replica holds, with how long ago each was called."""
        import ray

        context = serve.get_replica_context()
        wrapper = getattr(self, MULTIPLEX_ATTR, None)
        now = time.monotonic()
        loaded = [
            LoadedModelStats(
                key=k,
                team=self._team_of(k),
                bytes=self._ledger.charged(k),
                last_call_s_ago=round(now - self._last_call[k], 3) if k in self._last_call else None,
                in_flight=self._in_flight[k],
                served=self._served[k],
            )
            for k in (list(wrapper.models) if wrapper is not None else [])
        ]
        ledger = self._ledger
        return PoolReplicaStats(
            replica_id=context.replica_id.unique_id,
            actor_id=ray.get_runtime_context().get_actor_id() or "",
            configured=sorted(self._config.models),
            loaded=loaded,
            idle_unload_s=self._config.idle_unload_s,
            unloads=self._unloads,
            budget_bytes=ledger.budget_bytes,
            loaded_bytes=sum(m.bytes for m in loaded),
            max_models=ledger.max_models,
            memory_reserved_bytes=self._memory_bytes,
            baseline_rss_bytes=self._baseline_rss,
            rss_bytes=process_rss(),
            evictions_by_bytes=ledger.evictions_by_bytes,
            evictions_by_count=ledger.evictions_by_count,
            evicted_bytes=ledger.evicted_bytes,
            refused=[
                RefusedModelStats(key=k, team=self._team_of(k), bytes=b)
                for k, b in sorted(ledger.refused.items())
            ],
        )

    def _team_of(self, key: str) -> str | None:
        spec = self._config.models.get(key)
        return spec.team if spec is not None else None


@serve.deployment(name=DEDICATED_DEPLOYMENT, max_ongoing_requests=64)
class DedicatedModel:
    """One version, loaded when the replica starts; concurrent requests share one model call."""

    def __init__(self, spec: dict[str, Any], artifact: bytes | None = None) -> None:
        self.spec = ModelSpec.model_validate(spec)
        # Loaded before the replica reports ready, so a broken artifact fails the deployment. A
        # python-flavor replica gets its archive from the deployer (it holds no store credentials);
        # it is verified against the sha256 here all the same.
        settings = ServingSettings()
        if artifact is not None:
            self.runtime = load_verified(self.spec, artifact, settings)
        elif self.spec.flavor in ISOLATED_FLAVORS:
            raise UntrustedArtifactError(
                f"{self.spec.key}: a python-flavor replica is handed its archive by the deployer; "
                "it does not fetch from the artifact store",
                field="flavor",
            )
        else:
            self.runtime = load_model(self.spec, settings)

    async def predict(self, rows: list[dict[str, JsonValue]]) -> list[JsonValue]:
        """Predict; the ``multiplexed_model_id`` a caller may pass is ignored."""
        result = await self._batched(rows)
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]

    @serve.batch(max_batch_size=BATCH_MAX_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
    async def _batched(self, requests: list[list[dict[str, JsonValue]]]) -> list[Any]:
        flat = [row for rows in requests for row in rows]
        try:
            predictions = await run_predict(self.runtime, flat)
        except Exception:
            if len(requests) == 1:
                raise
            # One bad request must not fail the others batched with it: retry them one by one.
            return list(await asyncio.gather(*(self._one(rows) for rows in requests), return_exceptions=True))
        out: list[Any] = []
        start = 0
        for rows in requests:
            out.append(predictions[start : start + len(rows)])
            start += len(rows)
        return out

    async def _one(self, rows: list[dict[str, JsonValue]]) -> list[JsonValue]:
        return await run_predict(self.runtime, rows)

    async def stats(self) -> DedicatedReplicaStats:
        """Which replica answered, for the version it hosts."""
        import ray

        return DedicatedReplicaStats(
            replica_id=serve.get_replica_context().replica_id.unique_id,
            actor_id=ray.get_runtime_context().get_actor_id() or "",
            model=self.spec.key,
        )


def _code_fingerprint() -> str:
    """Changes when the serving code changes, so new code rolls replicas; equal code does not."""
    digest = hashlib.sha256()
    with contextlib.suppress(metadata.PackageNotFoundError):
        digest.update(metadata.version("fleet-serving").encode())
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def deployment_version(*parts: Any) -> str:
    """A stable Serve deployment version over everything that needs a restart to change.

    ``user_config`` is left out on purpose: Serve applies a changed ``user_config`` to live
    replicas through ``reconfigure`` when the version is unchanged.
    """
    digest = hashlib.sha256(_code_fingerprint().encode())
    for part in parts:
        digest.update(repr(part).encode())
    return digest.hexdigest()[:16]


def quota_actor_options(
    quota: ResourceQuota, env: Mapping[str, str] | None, *, spot_resource: bool = False
) -> dict[str, Any]:
    """``ray_actor_options`` of one replica under ``quota``."""
    options: dict[str, Any] = {"num_cpus": quota.num_cpus, "runtime_env": {"env_vars": replica_env(env)}}
    if quota.memory_mb is not None:
        options["memory"] = quota.memory_mb * 2**20
    if quota.capacity_class == "spot" and spot_resource:
        options["resources"] = {SPOT_RESOURCE: SPOT_RESOURCE_PER_REPLICA}
    return options


def quota_autoscaling(quota: ResourceQuota, *, idle_s: float) -> dict[str, Any]:
    """``autoscaling_config`` under ``quota``; ``min_replicas=0`` scales an idle model to zero."""
    return {
        "min_replicas": quota.min_replicas,
        "max_replicas": quota.max_replicas,
        "target_ongoing_requests": quota.target_ongoing_requests,
        "initial_replicas": max(1, quota.min_replicas),
        "downscale_to_zero_delay_s": idle_s,
    }


def pool_placement_options(sizing: PoolSizing) -> dict[str, Any]:
    """The pool deployment's routing and spread options (ADR 0027): its request router, and how
    many of its replicas one node may hold."""
    options: dict[str, Any] = {}
    if sizing.placement == "rendezvous":
        options["request_router_config"] = RequestRouterConfig(
            request_router_class=POOL_ROUTER_PATH,
            request_router_kwargs={
                "hot_ongoing_requests": sizing.hot_ongoing_requests,
                "max_replicas_per_model": sizing.max_replicas_per_model,
            },
        )
    if sizing.max_replicas_per_node is not None:
        options["max_replicas_per_node"] = sizing.max_replicas_per_node
    return options


def pool_application(
    config: catalog.PoolCatalogRef,
    sizing: PoolSizing,
    env: Mapping[str, str] | None = None,
    *,
    idle_s: float | None = None,
) -> Application:
    """The shared pool as a Serve application, its replicas reading the catalog ``config`` names
    (published first: ``ServingControl.apply_pool``). Re-running it with only ``config`` changed
    reconfigures the live replicas. ``idle_s`` (default ``config.idle_unload_s``) is how long a
    pool with ``min_replicas=0`` stays up without traffic."""
    actor_options: dict[str, Any] = {
        "num_cpus": sizing.num_cpus,
        "runtime_env": {"env_vars": replica_env(env)},
    }
    autoscaling = {
        "min_replicas": sizing.min_replicas,
        "max_replicas": sizing.max_replicas,
        "target_ongoing_requests": sizing.target_ongoing_requests,
        "initial_replicas": max(1, sizing.min_replicas),
        "downscale_to_zero_delay_s": idle_s if idle_s is not None else config.idle_unload_s,
    }
    memory_bytes = sizing.memory_mb * 2**20 if sizing.memory_mb is not None else None
    if memory_bytes is not None:
        actor_options["memory"] = memory_bytes
    budget_bytes = sizing.model_budget_mb * 2**20 if sizing.model_budget_mb is not None else None
    placement = pool_placement_options(sizing)
    version = deployment_version(
        "pool",
        sorted(actor_options["runtime_env"]["env_vars"].items()),
        sizing.num_cpus,
        sizing.max_models_per_replica,
        memory_bytes,
        budget_bytes,
        sorted((k, repr(v)) for k, v in placement.items()),
        sorted(REPLICA_LOGGING.items()),
    )
    return ModelPool.options(  # type: ignore[attr-defined]
        version=version,
        _internal=True,  # Serve only takes an explicit version internally; see ADR 0010
        ray_actor_options=actor_options,
        autoscaling_config=autoscaling,
        user_config=config.model_dump(mode="json"),
        logging_config=REPLICA_LOGGING,
        **GRACEFUL_SHUTDOWN,
        **placement,
    ).bind(
        max_models_per_replica=sizing.max_models_per_replica,
        memory_bytes=memory_bytes,
        model_budget_bytes=budget_bytes,
    )


def dedicated_application(
    spec: ModelSpec,
    quota: ResourceQuota,
    *,
    idle_s: float,
    env: Mapping[str, str] | None = None,
    spot_resource: bool = False,
    artifact: bytes | None = None,
) -> Application:
    """One version's own deployment under ``quota``. ``idle_s`` is how long it stays up without
    traffic before scaling to ``quota.min_replicas`` (zero by default). ``spot_resource``: the
    cluster advertises ``SPOT_RESOURCE``, so spot-class replicas request it.

    A python-flavor version runs publisher code: its replicas get ``isolated_env`` (no store
    credentials) and ``artifact``, the archive the caller fetched and verified for them."""
    isolated = spec.flavor in ISOLATED_FLAVORS
    if isolated and artifact is None:
        raise ValueError(f"{spec.key}: a python-flavor deployment needs its archive from the deployer")
    actor_options = quota_actor_options(
        quota, isolated_env(env) if isolated else env, spot_resource=spot_resource
    )
    payload = spec.model_dump(mode="json")
    version = deployment_version(
        "dedicated",
        sorted(payload.items()),
        sorted(actor_options["runtime_env"]["env_vars"].items()),
        sorted(REPLICA_LOGGING.items()),
    )
    return DedicatedModel.options(  # type: ignore[attr-defined]
        version=version,
        _internal=True,
        ray_actor_options=actor_options,
        autoscaling_config=quota_autoscaling(quota, idle_s=idle_s),
        logging_config=REPLICA_LOGGING,
        **GRACEFUL_SHUTDOWN,
    ).bind(payload, artifact if isolated else None)
