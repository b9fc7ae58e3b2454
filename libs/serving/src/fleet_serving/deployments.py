"""The Ray Serve deployments that host models, and the builders that turn fleet config into them.

- ``ModelPool``: many small versions share a few replicas. Each replica loads versions on demand
  through ``serve.multiplexed`` (keyed ``name:version``, LRU-bounded) and unloads a version nobody
  has called for ``idle_unload_s``. Which versions it may load arrives as ``user_config`` (a
  ``PoolConfig``), so adding a version reconfigures live replicas instead of restarting them.
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
from fleet_core.serving import DEDICATED_DEPLOYMENT, POOL_DEPLOYMENT, ModelSpec, PoolConfig, PoolSizing
from fleet_serving.errors import UnknownModelError, UntrustedArtifactError
from fleet_serving.loading import aload_model, load_model, load_verified
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
    last_call_s_ago: float | None
    in_flight: int
    served: int = 0
    """Calls for the version this replica has answered since it started."""


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


class DedicatedReplicaStats(BaseModel):
    """``DedicatedModel.stats``: the replica and the version it hosts."""

    replica_id: str
    actor_id: str
    model: str


@serve.deployment(name=POOL_DEPLOYMENT, max_ongoing_requests=32)
class ModelPool:
    """A replica that serves any configured version by its ``multiplexed_model_id``."""

    def __init__(self, max_models_per_replica: int = 64) -> None:
        self._max_models = max_models_per_replica
        self._config = PoolConfig()
        self._settings = ServingSettings()
        self._last_call: dict[str, float] = {}
        self._in_flight: Counter[str] = Counter()
        self._served: Counter[str] = Counter()
        self._unloads = 0
        self._sweeper: asyncio.Task[None] | None = None

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """A new ``PoolConfig``: takes effect for the next request; no restart."""
        self._config = PoolConfig.model_validate(user_config)
        self._ensure_sweeper()

    @serve.multiplexed(max_num_models_per_replica=64)
    async def _model(self, key: str) -> Runtime:
        spec = self._config.models.get(key)
        if spec is None:
            raise UnknownModelError(f"model {key!r} is not served by this pool", field="model")
        require_shareable(spec)
        return await aload_model(spec, self._settings)

    async def predict(self, rows: list[dict[str, JsonValue]]) -> list[JsonValue]:
        """Predict with the version named by the request's ``multiplexed_model_id``."""
        key = serve.get_multiplexed_model_id()
        if not key:
            raise UnknownModelError(
                "no model key: call the pool with handle.options(multiplexed_model_id='name:version')",
                field="model",
            )
        if key not in self._config.models:
            raise UnknownModelError(
                f"model {key!r} is not served by this pool (configured: {sorted(self._config.models)})",
                field="model",
            )
        self._ensure_sweeper()
        self._in_flight[key] += 1
        self._last_call[key] = time.monotonic()
        try:
            runtime = await self._model(key)
            self._size_cache()
            result = await run_predict(runtime, rows)
            self._served[key] += 1
            return result
        finally:
            self._in_flight[key] -= 1
            self._last_call[key] = time.monotonic()

    def _size_cache(self) -> None:
        # The decorator's bound is fixed at import; the pool's comes from PoolSizing at bind time.
        wrapper = getattr(self, MULTIPLEX_ATTR, None)
        if wrapper is not None:
            wrapper.max_num_models_per_replica = self._max_models

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
        """Unload versions idle for ``idle_unload_s`` (and versions no longer configured).

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
        if unloaded:
            self._unloads += len(unloaded)
            # Tell the router this replica no longer holds them (Serve does this after its own evictions).
            wrapper._push_multiplexed_replica_info = True
            log.info("unloaded idle models %s", unloaded)
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
                last_call_s_ago=round(now - self._last_call[k], 3) if k in self._last_call else None,
                in_flight=self._in_flight[k],
                served=self._served[k],
            )
            for k in (list(wrapper.models) if wrapper is not None else [])
        ]
        return PoolReplicaStats(
            replica_id=context.replica_id.unique_id,
            actor_id=ray.get_runtime_context().get_actor_id() or "",
            configured=sorted(self._config.models),
            loaded=loaded,
            idle_unload_s=self._config.idle_unload_s,
            unloads=self._unloads,
        )


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
    config: PoolConfig,
    sizing: PoolSizing,
    env: Mapping[str, str] | None = None,
    *,
    idle_s: float | None = None,
) -> Application:
    """The shared pool as a Serve application. Re-running it with only ``config`` changed
    reconfigures the live replicas. ``idle_s`` (default ``config.idle_unload_s``) is how long a
    pool with ``min_replicas=0`` stays up without traffic."""
    actor_options = {"num_cpus": sizing.num_cpus, "runtime_env": {"env_vars": replica_env(env)}}
    autoscaling = {
        "min_replicas": sizing.min_replicas,
        "max_replicas": sizing.max_replicas,
        "target_ongoing_requests": sizing.target_ongoing_requests,
        "initial_replicas": max(1, sizing.min_replicas),
        "downscale_to_zero_delay_s": idle_s if idle_s is not None else config.idle_unload_s,
    }
    placement = pool_placement_options(sizing)
    version = deployment_version(
        "pool",
        sorted(actor_options["runtime_env"]["env_vars"].items()),
        sizing.num_cpus,
        sizing.max_models_per_replica,
        sorted((k, repr(v)) for k, v in placement.items()),
    )
    return ModelPool.options(  # type: ignore[attr-defined]
        version=version,
        _internal=True,  # Serve only takes an explicit version internally; see ADR 0010
        ray_actor_options=actor_options,
        autoscaling_config=autoscaling,
        user_config=config.model_dump(mode="json"),
        **GRACEFUL_SHUTDOWN,
        **placement,
    ).bind(max_models_per_replica=sizing.max_models_per_replica)


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
        "dedicated", sorted(payload.items()), sorted(actor_options["runtime_env"]["env_vars"].items())
    )
    return DedicatedModel.options(  # type: ignore[attr-defined]
        version=version,
        _internal=True,
        ray_actor_options=actor_options,
        autoscaling_config=quota_autoscaling(quota, idle_s=idle_s),
        **GRACEFUL_SHUTDOWN,
    ).bind(payload, artifact if isolated else None)
