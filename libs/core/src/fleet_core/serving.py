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

from pydantic import Field

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


class PoolSizing(Contract):
    """Replica bounds and per-replica cache of the shared pool (deployer settings)."""

    min_replicas: Annotated[int, Field(ge=0)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 2
    max_models_per_replica: Annotated[int, Field(ge=1)] = 64
    target_ongoing_requests: Annotated[float, Field(gt=0)] = 8.0
    num_cpus: Annotated[float, Field(ge=0)] = 0.5
    placement: PoolPlacement = "rendezvous"
    """How requests find a replica: ``rendezvous`` (``fleet_core.placement``: each model on its
    first replica by rendezvous hashing, spread to more while they are busy) or ``serve`` (Ray
    Serve's own multiplexed routing: a model stays where it is loaded until that replica is full)."""
    hot_ongoing_requests: Annotated[float, Field(gt=0)] = 4.0
    """``rendezvous``: a model spills to its next replica while its replicas so far have this
    many requests in flight."""
    max_replicas_per_model: Annotated[int, Field(ge=1)] = 2
    """``rendezvous``: how many replicas a hot model spreads over (more only while all are full)."""
    max_replicas_per_node: Annotated[int, Field(ge=1)] | None = None
    """At most this many pool replicas on one Ray node (Serve's ``max_replicas_per_node``), so a
    node's death takes only its share of the pool; None: no limit (Serve spreads by default)."""


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
