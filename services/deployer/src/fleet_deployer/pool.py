"""The shared pool as an operator sees it (``GET /v1/pool``, ``fleet deployments show fleet-pool``):
each replica's memory budget, what it holds and what each loaded version costs, and the versions
kept out of the pool because they are larger than a replica's budget.

Plain logic over what the replicas report (``ModelPool.stats``, as plain data) and the deployer's
own pool specs. A caller who cannot see every team sees only its teams' versions; a replica's
totals (bytes loaded, models loaded, evictions) are shown to everyone, since they name no model
and are what explains an eviction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fleet_core.serving import POOL_APP, ModelSpec, PoolSizing, loaded_estimate, pool_refusal


class PoolModelView(BaseModel):
    """One version loaded in a replica."""

    model_config = ConfigDict(extra="ignore")

    key: str
    team: str | None = None
    bytes: int = Field(description="Charged at load: max(RSS delta of the load, artifact size, 64 KiB)")
    last_call_s_ago: float | None = None
    in_flight: int = 0


class PoolRefusedView(BaseModel):
    """A version a replica measured larger than its whole budget at load."""

    model_config = ConfigDict(extra="ignore")

    key: str
    team: str | None = None
    bytes: int


class PoolReplicaView(BaseModel):
    """One pool replica's memory: budget, what it holds, what it evicted."""

    model_config = ConfigDict(extra="ignore")

    replica_id: str
    actor_id: str = ""
    budget_bytes: int | None = None
    loaded_bytes: int = Field(default=0, description="Over every loaded version, of every team")
    models_loaded: int = Field(default=0, description="Over every team")
    max_models: int | None = None
    memory_reserved_bytes: int | None = None
    baseline_rss_bytes: int | None = Field(default=None, description="RSS of the replica before any model")
    rss_bytes: int | None = None
    evictions_by_bytes: int = 0
    evictions_by_count: int = 0
    evicted_bytes: int = 0
    unloads: int = 0
    loaded: list[PoolModelView] = Field(default_factory=list, description="The caller's teams' only")
    refused: list[PoolRefusedView] = Field(default_factory=list, description="The caller's teams' only")


class PoolRefusal(BaseModel):
    """A pool-placed version the deployer keeps out of the pool's config: too large for it."""

    model: str
    version: int
    team: str
    size_bytes: int
    estimated_bytes: int
    reason: str


class PoolView(BaseModel):
    """``GET /v1/pool``."""

    app: str = POOL_APP
    connected: bool = Field(description="Whether the deployer reached Ray; replicas are empty otherwise")
    memory_mb: int | None = Field(description="Memory each replica reserves (FLEET_POOL_MEMORY_MB)")
    model_budget_bytes: int | None = Field(
        description="The budget the deployer places by (explicit, or derived with baseline_mb)"
    )
    baseline_mb: int
    max_models_per_replica: int
    min_replicas: int
    max_replicas: int
    configured: int = Field(description="The caller's teams' versions configured in the pool")
    loaded_bytes: int = Field(description="Over every replica and team")
    replicas: list[PoolReplicaView]
    refused: list[PoolRefusal]


def pool_view(
    stats: Iterable[Mapping[str, Any]],
    specs: Iterable[ModelSpec],
    sizing: PoolSizing,
    teams: list[str] | None,
    *,
    connected: bool,
) -> PoolView:
    """What ``teams`` (None: every team) may see of the pool."""

    def visible(team: str | None) -> bool:
        return teams is None or (team is not None and team in teams)

    budget = sizing.model_budget_bytes
    specs = list(specs)
    refused = [
        PoolRefusal(
            model=s.model,
            version=s.version,
            team=s.team,
            size_bytes=s.size_bytes,
            estimated_bytes=loaded_estimate(s),
            reason=reason,
        )
        for s in specs
        if visible(s.team) and (reason := pool_refusal(s, budget)) is not None
    ]
    replicas = []
    for raw in stats:
        loaded = [PoolModelView.model_validate(m) for m in raw.get("loaded") or []]
        replica = PoolReplicaView.model_validate(
            {
                **raw,
                "loaded_bytes": sum(m.bytes for m in loaded),
                "models_loaded": len(loaded),
                "loaded": [m for m in loaded if visible(m.team)],
                "refused": [r for r in raw.get("refused") or [] if visible(r.get("team"))],
            }
        )
        replicas.append(replica)
    refused_keys = {(r.model, r.version) for r in refused}
    return PoolView(
        connected=connected,
        memory_mb=sizing.memory_mb,
        model_budget_bytes=budget,
        baseline_mb=sizing.baseline_mb,
        max_models_per_replica=sizing.max_models_per_replica,
        min_replicas=sizing.min_replicas,
        max_replicas=sizing.max_replicas,
        configured=sum(1 for s in specs if visible(s.team) and (s.model, s.version) not in refused_keys),
        loaded_bytes=sum(r.loaded_bytes for r in replicas),
        replicas=sorted(replicas, key=lambda r: r.replica_id),
        refused=refused,
    )
