"""Deployer settings (``FLEET_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from fleet_core.serving import PoolPlacement, PoolSizing
from fleet_core.settings import ServiceSettings


class DeployerSettings(ServiceSettings):
    port: int = 8002
    ray_address: str | None = None
    """Ray cluster to drive (``host:port``, ``ray://host:port`` or ``auto``). None: serving control is
    disabled, deployments stay ``pending`` and ``/readyz`` says so."""
    registry_url: str = "http://127.0.0.1:8001"
    """Where to look up a version the deployer never saw a ``model.registered`` event for."""
    registry_timeout_s: float = Field(default=10.0, gt=0)
    consume_events: bool = True
    """Consume ``model.registered``, ``rollout.requested`` and ``inference.logged``; False serves the
    REST API only."""

    pool_min_replicas: int = Field(default=PoolSizing().min_replicas, ge=0)
    pool_max_replicas: int = Field(default=PoolSizing().max_replicas, ge=1)
    pool_max_models_per_replica: int = Field(default=PoolSizing().max_models_per_replica, ge=1)
    """A secondary bound by count on the models one pool replica keeps loaded; the primary bound is
    its memory (``pool_memory_mb``, ``pool_model_budget_mb``)."""
    pool_memory_mb: int = Field(default=PoolSizing().memory_mb or 0, ge=0)
    """Memory each pool replica reserves from Ray (``ray_actor_options.memory``, MB); its model
    budget derives from it. 0 reserves none (then the budget is ``pool_model_budget_mb``, if set)."""
    pool_model_budget_mb: int | None = Field(default=None, ge=1)
    """Bytes (MB) of loaded models one pool replica keeps, LRU by bytes; default: the reservation
    minus the replica's empty RSS minus 10 % headroom. A version too large for it is refused from
    the pool (it needs a quota)."""
    pool_baseline_mb: int = Field(default=PoolSizing().baseline_mb, ge=0)
    """Expected RSS of an empty pool replica (MB), for the deployer's placement check; each replica
    measures its own."""
    pool_target_ongoing_requests: float = Field(default=PoolSizing().target_ongoing_requests, gt=0)
    pool_num_cpus: float = Field(default=PoolSizing().num_cpus, ge=0)
    """CPUs reserved by each pool replica."""
    pool_placement: PoolPlacement = PoolSizing().placement
    """``rendezvous`` (each model on its own first replica, spread while hot; ADR 0027) or
    ``serve`` (Ray Serve's multiplexed routing)."""
    pool_hot_ongoing_requests: float = Field(default=PoolSizing().hot_ongoing_requests, gt=0)
    """A model's requests in flight at one replica from which it spills to its next replica."""
    pool_max_replicas_per_model: int = Field(default=PoolSizing().max_replicas_per_model, ge=1)
    """How many pool replicas a hot model spreads over (more only while they are all full)."""
    pool_max_replicas_per_node: int | None = Field(default=None, ge=1)
    """At most this many pool replicas on one Ray node (unset: no limit)."""

    idle_unload_s: float = Field(default=300.0, gt=0)
    """A version with no request for this long is idle: unloaded from pool replicas, and its dedicated
    deployment scales to its minimum replicas."""
    reconcile_interval_s: float = Field(default=30.0, gt=0)
    """How often Ray Serve is compared with the database (missing applications re-created, stuck
    direct rollouts resumed)."""
    progress_interval_s: float = Field(default=1.0, gt=0)
    """How often progressive rollouts are checked: a canary step whose hold is over and whose
    verdict passed advances; A/B and shadow rollouts past their deadline end."""
    activity_flush_interval_s: float = Field(default=5.0, gt=0)
    """How often last-request times from ``inference.logged`` are written to the database."""

    @property
    def pool_sizing(self) -> PoolSizing:
        return PoolSizing(
            min_replicas=self.pool_min_replicas,
            max_replicas=self.pool_max_replicas,
            max_models_per_replica=self.pool_max_models_per_replica,
            target_ongoing_requests=self.pool_target_ongoing_requests,
            num_cpus=self.pool_num_cpus,
            memory_mb=self.pool_memory_mb or None,
            model_budget_mb=self.pool_model_budget_mb,
            baseline_mb=self.pool_baseline_mb,
            placement=self.pool_placement,
            hot_ongoing_requests=self.pool_hot_ongoing_requests,
            max_replicas_per_model=self.pool_max_replicas_per_model,
            max_replicas_per_node=self.pool_max_replicas_per_node,
        )

    def replica_env(self) -> dict[str, str]:
        """The ``FLEET_*`` settings a serving replica needs to fetch artifacts: FLEET_HOME and S3."""
        env = {"FLEET_HOME": str(self.home)}
        values: dict[str, str | None] = {
            "FLEET_S3_ENDPOINT": self.s3_endpoint,
            "FLEET_S3_ACCESS_KEY": self.s3_access_key.get_secret_value() if self.s3_access_key else None,
            "FLEET_S3_SECRET_KEY": self.s3_secret_key.get_secret_value() if self.s3_secret_key else None,
            "FLEET_S3_REGION": self.s3_region,
            "FLEET_S3_SECURE": str(self.s3_secure).lower(),
        }
        env.update({k: v for k, v in values.items() if v is not None})
        return env
