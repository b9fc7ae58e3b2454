"""Serving contracts shared by the deployer, the serving engine (``fleet_serving``) and the gateway.

The deployer decides *what* runs *where* (``Placement``) and which share of traffic each version
gets (``RouteTable`` in ``fleet_core.events``); the serving engine runs it on Ray Serve; the
gateway reads ``ModelRoute`` snapshots from the deployer and calls the deployments through
``DeploymentHandle``s. None of these types imports Ray, FastAPI or Kafka.

Calling convention every serving deployment honours (pool and dedicated alike)::

    await handle.options(multiplexed_model_id=spec.key).predict.remote(rows)
    # rows: list[dict[str, JsonValue]] already validated against spec.signature
    # returns: list[JsonValue], one prediction per row

A pool deployment picks the model by ``multiplexed_model_id``; a dedicated deployment hosts one
version and ignores it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from fleet_core.events import ModelRegistered, RouteTable
from fleet_core.schemas import Contract, Flavor, JsonValue, ResourceQuota, Signature, Task

POOL_APP = "fleet-pool"
"""Ray Serve application name of the shared multi-model pool."""
POOL_DEPLOYMENT = "ModelPool"
DEDICATED_DEPLOYMENT = "DedicatedModel"
SERVE_NAMESPACE = "modelfleet"

DeploymentState = Literal["pending", "deploying", "ready", "failed", "retired"]
PlacementKind = Literal["pool", "dedicated"]
PoolPlacement = Literal["rendezvous", "serve"]


def model_key(model: str, version: int) -> str:
    """The multiplexing key of one version: ``name:version``."""
    return f"{model}:{version}"


def dedicated_app_name(model: str, version: int) -> str:
    """Ray Serve application name of a version's dedicated deployment."""
    return "fleet-" + re.sub(r"[^A-Za-z0-9_-]", "-", model) + f"-v{version}"


class ModelSpec(Contract):
    """Everything a serving replica needs to load and verify one version."""

    model: str
    version: int
    team: str
    flavor: Flavor
    task: Task = "other"
    artifact_uri: str
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size_bytes: int
    signature: Signature
    example_input: list[dict[str, JsonValue]] | None = None

    @property
    def key(self) -> str:
        return model_key(self.model, self.version)

    @classmethod
    def from_registered(cls, event: ModelRegistered) -> ModelSpec:
        return cls(
            model=event.model,
            version=event.version,
            team=event.team,
            flavor=event.flavor,
            task=event.task,
            artifact_uri=event.artifact_uri,
            sha256=event.sha256,
            size_bytes=event.size_bytes,
            signature=event.signature,
            example_input=event.example_input,
        )


class Placement(Contract):
    """Where a version runs: the shared pool, or its own deployment."""

    kind: PlacementKind
    app: str
    deployment: str

    @classmethod
    def pool(cls) -> Placement:
        return cls(kind="pool", app=POOL_APP, deployment=POOL_DEPLOYMENT)

    @classmethod
    def dedicated(cls, model: str, version: int) -> Placement:
        return cls(kind="dedicated", app=dedicated_app_name(model, version), deployment=DEDICATED_DEPLOYMENT)


class PoolConfig(Contract):
    """The pool deployment's ``user_config``: which versions it may load, and its idle policy.

    Changing it reconfigures live replicas without a restart.
    """

    models: dict[str, ModelSpec] = Field(default_factory=dict, description="By model_key")
    idle_unload_s: Annotated[float, Field(gt=0)] = 300.0
    """A model not called for this long is unloaded from the replica; its next call reloads it."""


MIN_MODEL_BYTES = 64 * 2**10
"""What a loaded model is charged at least: its runtime object, its spec, Serve's per-model
bookkeeping. Below this an RSS delta is allocator noise (see ``docs/serving.md``)."""
LOADED_SIZE_FACTOR: dict[str, float] = {"sklearn": 1.0, "onnx": 6.0, "python": 2.0}
"""Loaded memory over artifact size, by flavor, as measured on this box (``docs/serving.md``): a
skops model takes about 0.7x its file once loaded (RSS); an onnxruntime session 4-5x its graph,
on top of ``LOADED_OVERHEAD``. Used to judge, before loading, whether a version can fit a pool
replica at all and how much to evict for it; what a replica charges is measured at load."""
LOADED_OVERHEAD: dict[str, int] = {"onnx": 3 * 2**20}
"""Fixed memory of a loaded model beyond its graph: an onnxruntime session of a 0.3 MB forest
took 3.3 MB."""
BUDGET_HEADROOM = 0.10
"""Share of a replica's memory reservation kept out of the derived model budget: transient buffers
of predictions, imports a first load pulls in, allocator fragmentation."""


def model_budget(memory_bytes: int, baseline_rss_bytes: int) -> int:
    """Bytes of models a replica reserving ``memory_bytes`` can hold above its empty RSS."""
    return max(0, int(memory_bytes * (1 - BUDGET_HEADROOM)) - baseline_rss_bytes)


class PoolSizing(Contract):
    """Replica bounds and per-replica memory of the shared pool (deployer settings).

    Each replica reserves ``memory_mb`` (Ray ``ray_actor_options.memory``) and keeps loaded models
    within a byte budget: ``model_budget_mb`` when set, else the reservation minus the replica's own
    RSS before any model (measured by the replica; ``baseline_mb`` is the deployer's expectation of
    it) minus ``BUDGET_HEADROOM``. ``max_models_per_replica`` is a secondary bound by count.
    """

    min_replicas: Annotated[int, Field(ge=0)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 2
    max_models_per_replica: Annotated[int, Field(ge=1)] = 1024
    target_ongoing_requests: Annotated[float, Field(gt=0)] = 8.0
    num_cpus: Annotated[float, Field(ge=0)] = 0.5
    placement: PoolPlacement = "rendezvous"
    """How requests find a replica: ``rendezvous`` (``fleet_core.placement``: each model on its
    first replica by rendezvous hashing, spread to more while they are busy) or ``serve`` (Ray
    Serve's own multiplexed routing: a model stays where it is loaded until that replica is full)."""
    hot_ongoing_requests: Annotated[float, Field(gt=0)] = 1.0
    """``rendezvous``: a model spills to its next replica while its replicas so far have this
    many requests in flight (counted by each calling gateway process). It must stay below the
    gateway's ``FLEET_BATCH_MAX_INFLIGHT`` (2): batching keeps at most that many calls of a
    version in flight per gateway process, so a higher threshold could never be reached."""
    max_replicas_per_model: Annotated[int, Field(ge=1)] = 2
    """``rendezvous``: how many replicas a hot model spreads over (more only while all are full)."""
    max_replicas_per_node: Annotated[int, Field(ge=1)] | None = None
    """At most this many pool replicas on one Ray node (Serve's ``max_replicas_per_node``), so a
    node's death takes only its share of the pool; None: no limit (Serve spreads by default)."""

    memory_mb: Annotated[int, Field(ge=64)] | None = 1024
    """Memory each pool replica reserves from Ray; None reserves none (then set ``model_budget_mb``
    or the replica's cache is bounded by count only)."""
    model_budget_mb: Annotated[int, Field(ge=1)] | None = None
    """Bytes of loaded models per replica, explicitly; None derives it from ``memory_mb``."""
    baseline_mb: Annotated[int, Field(ge=0)] = 360
    """Expected RSS of an empty pool replica (measured here: ~337 MB). The deployer's placement
    check uses it; each replica measures its own at start."""

    @model_validator(mode="after")
    def _budget_leaves_room(self) -> PoolSizing:
        if (
            self.model_budget_mb is None
            and self.memory_mb is not None
            and self.derived_budget_bytes(self.baseline_mb * 2**20) < 16 * 2**20
        ):
            raise ValueError(
                f"memory_mb={self.memory_mb} leaves under 16 MB for models above an empty replica's "
                f"~{self.baseline_mb} MB and {BUDGET_HEADROOM:.0%} headroom: raise memory_mb or set "
                "model_budget_mb"
            )
        return self

    def derived_budget_bytes(self, baseline_rss_bytes: int) -> int:
        """The model budget of a replica whose empty RSS is ``baseline_rss_bytes``."""
        if self.model_budget_mb is not None:
            return self.model_budget_mb * 2**20
        assert self.memory_mb is not None
        return model_budget(self.memory_mb * 2**20, baseline_rss_bytes)

    @property
    def model_budget_bytes(self) -> int | None:
        """The per-replica model budget as the deployer expects it (None: count-bounded only)."""
        if self.model_budget_mb is None and self.memory_mb is None:
            return None
        return self.derived_budget_bytes(self.baseline_mb * 2**20)


def loaded_estimate(spec: ModelSpec) -> int:
    """Bytes ``spec`` is expected to take once loaded, before it is (``LOADED_SIZE_FACTOR``)."""
    factor = LOADED_SIZE_FACTOR.get(spec.flavor, 2.0)
    return max(int(spec.size_bytes * factor) + LOADED_OVERHEAD.get(spec.flavor, 0), MIN_MODEL_BYTES)


def pool_refusal(spec: ModelSpec, budget_bytes: int | None) -> str | None:
    """Why ``spec`` cannot go in a pool whose replicas keep ``budget_bytes`` of models, or None."""
    if budget_bytes is None:
        return None
    needed = loaded_estimate(spec)
    if needed <= budget_bytes:
        return None
    factor = LOADED_SIZE_FACTOR.get(spec.flavor, 2.0)
    return (
        f"{spec.key} is too large for the shared pool: its {spec.size_bytes / 2**20:.1f} MB {spec.flavor} "
        f"artifact needs about {needed / 2**20:.1f} MB loaded (~{factor:g}x), over a pool replica's "
        f"{budget_bytes / 2**20:.1f} MB model budget; it needs a dedicated deployment: deploy it with a "
        "quota (memory_mb), or raise FLEET_POOL_MEMORY_MB / FLEET_POOL_MODEL_BUDGET_MB"
    )


class ServedVersion(Contract):
    """One deployed version as the gateway needs it."""

    spec: ModelSpec
    placement: Placement
    quota: ResourceQuota | None = None
    state: DeploymentState = "pending"


class ModelRoute(Contract):
    """One model's route table with the versions it references."""

    model: str
    team: str
    table: RouteTable
    versions: list[ServedVersion]

    def served(self, version: int) -> ServedVersion | None:
        return next((v for v in self.versions if v.spec.version == version), None)


class RoutesSnapshot(Contract):
    """``GET /v1/routes`` on the deployer: every model's routes, for a gateway to bootstrap from."""

    models: list[ModelRoute]
    generated_at: datetime
