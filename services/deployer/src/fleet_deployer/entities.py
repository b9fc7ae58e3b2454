"""What the store hands out: plain pydantic entities, never ORM rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from fleet_core.events import RolloutPhase, RouteTable, Strategy
from fleet_core.schemas import DeployPolicy, ResourceQuota
from fleet_core.serving import DeploymentState, ModelSpec, Placement, ServedVersion
from fleet_deployer.routing import RouteCause

RolloutAction = Literal[
    "direct", "rollback", "candidate", "explicit", "unavailable", "canary", "ab", "shadow", "blue_green"
]


class KnownVersion(BaseModel):
    """A version the deployer may serve."""

    spec: ModelSpec
    quota: ResourceQuota | None = None
    deploy_policy: DeployPolicy = "none"
    source: str = Field(default="event", description="'event' (model.registered) or 'registry' (looked up)")
    created_at: datetime | None = None
    registered_by: str | None = Field(default=None, description="Who registered it, per the registry")

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def version(self) -> int:
        return self.spec.version

    @property
    def team(self) -> str:
        return self.spec.team


class Deployment(BaseModel):
    """One version placed on the serving engine."""

    model: str
    version: int
    team: str
    placement: Placement
    quota: ResourceQuota | None = None
    state: DeploymentState
    error: str | None = None
    created_at: datetime
    updated_at: datetime

    def served(self, spec: ModelSpec) -> ServedVersion:
        return ServedVersion(spec=spec, placement=self.placement, quota=self.quota, state=self.state)


class Rollout(BaseModel):
    """A rollout's persisted state."""

    id: str
    model: str
    team: str
    version: int
    strategy: Strategy
    phase: RolloutPhase
    step: int = 0
    quota: ResourceQuota | None = None
    requested_by: str
    reason: str | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    action: RolloutAction = Field(
        default="direct",
        description="What the rollout does: deploy, roll back, add a 0 % candidate, "
        "set an explicit table, record an unavailable strategy, or run a progressive strategy",
    )
    progress: dict[str, Any] | None = Field(
        default=None,
        description="Progressive rollouts: baseline, steps and current index, when the step began, "
        "the deadline and the monitor's latest verdict",
    )


class RouteHistoryEntry(BaseModel):
    """One revision of a model's route table."""

    table: RouteTable
    cause: RouteCause
    rollout_id: str | None = None
    created_at: datetime
    created_by: str


class DeploymentView(BaseModel):
    """A deployed version as ``GET /v1/deployments`` shows it."""

    model: str
    version: int
    team: str
    placement: Placement
    quota: ResourceQuota | None = None
    state: DeploymentState
    error: str | None = None
    replicas: int | None = Field(default=None, description="Running replicas of its Serve application")
    last_request_at: datetime | None = None
    idle: bool = Field(
        description="No request for idle_unload_s (or never, since it was deployed that long ago)"
    )
    traffic_weight: float = Field(description="Percent of primary traffic the route table gives it")
    shadow: bool = Field(default=False, description="Receives shadow copies of requests")
    created_at: datetime
    updated_at: datetime
