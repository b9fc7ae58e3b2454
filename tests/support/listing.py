"""A fleet of a thousand deployments from twenty teams, written straight into the deployer's
database (a thousand rollouts through Ray would take an hour), with the expected view of each, so
list tests can check the API's filters, sorts and pages against plain Python."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from fleet_core.schemas import ResourceQuota
from fleet_core.serving import POOL_APP, ModelSpec
from fleet_deployer.models import (
    DeploymentRow,
    KnownVersionRow,
    RolloutRow,
    RouteTableRow,
    VersionActivityRow,
)
from fleet_deployer.placement import placement_for
from support.deployer import DeployerHarness, FakeApp, FakeServingControl, registered

KINDS = ("churn", "fraud", "ads", "risk")
STRATEGIES = ("direct", "canary", "ab", "shadow", "blue_green")
PHASES = ("promoted", "rolled_back", "progressing", "failed")


@dataclass(frozen=True)
class Seeded:
    """What one seeded deployment should look like in ``GET /v1/deployments``."""

    model: str
    version: int
    team: str
    placement: str
    app: str
    state: str
    updated_at: datetime
    last_request_at: datetime | None
    traffic_weight: float
    shadow: bool

    def idle(self, idle_s: float, now: datetime) -> bool:
        return now - (self.last_request_at or self.updated_at) > timedelta(seconds=idle_s)


def team_of(i: int, teams: int) -> str:
    return f"team-{i % teams:02d}"


async def seed_fleet(
    harness: DeployerHarness, *, models: int = 1000, teams: int = 20, now: datetime | None = None
) -> list[Seeded]:
    """``models`` models (``m0000-churn`` ...), version 1 of each deployed, spread over ``teams``
    teams, both placements, every state, three activity patterns and varied traffic weights; one
    rollout per model. Times are minutes or a day away from the idle window, never near it."""
    now = now or datetime.now(UTC)
    known, deployments, tables, activity, rollouts, seeded = [], [], [], [], [], []
    for i in range(models):
        model, team = f"m{i:04d}-{KINDS[i % 4]}", team_of(i, teams)
        quota = ResourceQuota() if i % 10 == 3 else None
        placement = placement_for(model, 1, quota)
        state = (
            "retired" if i % 50 == 7 else "failed" if i % 13 == 5 else "pending" if i % 17 == 2 else "ready"
        )
        updated = now - timedelta(minutes=1 if i % 2 else 10 + i % 500, seconds=i % 60)
        last = (
            None
            if i % 3 == 0
            else now - timedelta(seconds=5 + i % 11)
            if i % 3 == 1
            else now - timedelta(days=1, seconds=i)
        )
        shadow = i % 25 == 0
        weight = 0.0 if shadow else float((i * 37) % 101)
        spec = ModelSpec.from_registered(registered(model, 1, team=team))
        known.append(
            {
                "model": model,
                "version": 1,
                "team": team,
                "spec": spec.model_dump(mode="json"),
                "created_at": now,
            }
        )
        deployments.append(
            {
                "model": model,
                "version": 1,
                "team": team,
                "placement_kind": placement.kind,
                "app": placement.app,
                "deployment": placement.deployment,
                "quota": quota.model_dump(mode="json") if quota else None,
                "state": state,
                "created_at": updated - timedelta(hours=1),
                "updated_at": updated,
            }
        )
        arm: dict[str, Any] = {"version": 1, "weight": weight, "mode": "shadow" if shadow else "primary"}
        tables.append({"model": model, "team": team, "revision": 1, "arms": [arm], "updated_at": updated})
        if last is not None:
            activity.append({"model": model, "version": 1, "last_request_at": last})
        rollouts.append(
            {
                "id": f"r-{i:04d}",
                "model": model,
                "team": team,
                "version": 1,
                "strategy": STRATEGIES[i % 5],
                "phase": PHASES[i % 4],
                "step": 100,
                "request": {},
                "requested_by": "seed",
                "created_at": now - timedelta(seconds=i * 7 % 1000, microseconds=i),
                "updated_at": now - timedelta(seconds=i),
            }
        )
        seeded.append(
            Seeded(model, 1, team, placement.kind, placement.app, state, updated, last, weight, shadow)
        )
    async with harness.controller.store.transaction() as s:
        for table, rows in (
            (KnownVersionRow, known),
            (DeploymentRow, deployments),
            (RouteTableRow, tables),
            (VersionActivityRow, activity),
            (RolloutRow, rollouts),
        ):
            await s.execute(insert(table), rows)
    serving = harness.serving
    if isinstance(serving, FakeServingControl):
        serving.apps[POOL_APP] = FakeApp(POOL_APP, replicas=2, max_replicas=4)
        for d in seeded:
            if d.placement == "dedicated":
                serving.apps[d.app] = FakeApp(d.app, replicas=1)
    return seeded
