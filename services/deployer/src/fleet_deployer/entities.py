"""What the store hands out: plain pydantic entities, never ORM rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from fleet_core.events import RolloutPhase, RouteTable, Strategy
from fleet_core.schemas import DeployPolicy, ResourceQuota
from fleet_core.serving import DeploymentState, ModelSpec, Placement, PlacementKind, ServedVersion
from fleet_deployer.routing import RouteCause

DeploymentSort = Literal[
    "name", "-name", "updated", "-updated", "last_request", "-last_request", "traffic", "-traffic"
]
"""How ``GET /v1/deployments`` orders its items; a leading ``-`` means descending."""
RolloutSort = Literal["created", "-created", "updated", "-updated", "model", "-model"]
"""How ``GET /v1/rollouts`` orders its items; a leading ``-`` means descending."""

RolloutAction = Literal[
    "direct",
    "rollback",
    "candidate",
    "explicit",
    "unavailable",
    "canary",
    "ab",
    "shadow",
    "blue_green",
    "undeploy",
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
        "set an explicit table, record an unavailable strategy, run a progressive strategy, or "
        "undeploy the model",
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


@dataclass(frozen=True)
class DeploymentFilter:
    """Which deployments a listing holds. ``teams`` is what the caller may read (None: every team);
    the other fields narrow that down and combine (all must match)."""

    teams: list[str] | None = None
    team: str | None = None
    model: str | None = None
    name: str | None = None
    """The model name contains this (names are lowercase, so any case matches)."""
    state: DeploymentState | None = None
    """Only this state; ``retired`` lists retired deployments even without ``include_retired``."""
    placement: PlacementKind | None = None
    idle: bool | None = None
    include_retired: bool = False


@dataclass(frozen=True)
class RolloutFilter:
    """Which rollouts a listing holds (all fields combine)."""

    teams: list[str] | None = None
    team: str | None = None
    model: str | None = None
    phase: RolloutPhase | None = None
    strategy: Strategy | None = None
