"""Route-table operations as plain functions: direct, progressive (canary, A/B, shadow), explicit
splits, rollback target."""

from __future__ import annotations

import pytest

from fleet_core.errors import Conflict, InvalidInput
from fleet_core.events import RouteArm, RouteTable, TrafficArm
from fleet_core.schemas import ResourceQuota
from fleet_deployer.placement import placement_for
from fleet_deployer.progressive import ab_table, canary_table, shadow_table
from fleet_deployer.routing import (
    ArmRequest,
    RouteRevision,
    direct_table,
    empty_table,
    explicit_table,
    previous_stable,
    stable_version,
)

DEPLOYED = {1: "fleet-pool", 2: "fleet-pool", 3: "fleet-m-v3"}


def table(revision: int, *arms: RouteArm) -> RouteTable:
    return RouteTable(model="m", revision=revision, arms=list(arms))


def full(version: int) -> RouteArm:
    return RouteArm(version=version, weight=100, deployment="fleet-pool")


def test_direct_deploy_routes_everything_to_the_new_version_and_drops_previous_arms() -> None:
    current = table(
        4,
        RouteArm(version=1, weight=90),
        RouteArm(version=2, weight=10),
        RouteArm(version=3, weight=0, mode="shadow"),
    )
    new = direct_table(current, 3, "fleet-m-v3")
    assert new.revision == 5
    assert new.arms == [RouteArm(version=3, weight=100, deployment="fleet-m-v3")]
    assert stable_version(new) == 3


def test_progressive_tables_canary_ab_and_shadow() -> None:
    apps = {1: "fleet-pool", 2: "fleet-m-v2"}
    canary = canary_table(table(1, full(1)), 1, 2, 25, apps)
    assert canary.revision == 2
    assert [(a.version, a.weight, a.deployment) for a in canary.arms] == [
        (1, 75, "fleet-pool"),
        (2, 25, "fleet-m-v2"),
    ]
    ab = ab_table(table(1, full(1)), 1, 2, None, apps)
    assert [(a.version, a.weight, a.sticky) for a in ab.arms] == [(1, 50, True), (2, 50, True)]
    with pytest.raises(ValueError, match="sum to 100"):
        ab_table(
            table(1, full(1)),
            1,
            2,
            [TrafficArm(version=1, weight=60), TrafficArm(version=2, weight=60)],
            apps,
        )
    shadow = shadow_table(table(1, full(1)), 1, 2, apps)
    assert [(a.version, a.weight, a.mode) for a in shadow.arms] == [(1, 100, "primary"), (2, 0, "shadow")]
    assert stable_version(shadow) == 1


def test_explicit_table_with_weighted_sticky_and_shadow_arms() -> None:
    arms = [
        ArmRequest(version=1, weight=90, sticky=True),
        ArmRequest(version=2, weight=10, sticky=True),
        ArmRequest(version=3, weight=55, mode="shadow"),
    ]
    new = explicit_table(empty_table("m"), arms, known={1, 2, 3}, deployed=DEPLOYED)
    assert new.revision == 1
    assert [(a.version, a.weight, a.mode, a.sticky, a.deployment) for a in new.arms] == [
        (1, 90, "primary", True, "fleet-pool"),
        (2, 10, "primary", True, "fleet-pool"),
        (3, 0, "shadow", False, "fleet-m-v3"),  # a shadow's weight is ignored
    ]
    assert stable_version(new) is None


@pytest.mark.parametrize(
    ("arms", "field", "words"),
    [
        ([ArmRequest(version=1, weight=60), ArmRequest(version=2, weight=30)], "arms.weight", "sum to 100"),
        ([ArmRequest(version=9, weight=100)], "arms[0].version", "no version 9"),
        (
            [ArmRequest(version=1, weight=50), ArmRequest(version=4, weight=50)],
            "arms[1].version",
            "not deployed",
        ),
        (
            [ArmRequest(version=1, weight=50), ArmRequest(version=1, weight=50)],
            "arms[1].version",
            "more than once",
        ),
        ([ArmRequest(version=3, mode="shadow")], "arms", "primary arm"),
        (
            [ArmRequest(version=1, weight=50, sticky=True), ArmRequest(version=2, weight=50)],
            "arms[1].sticky",
            "sticky",
        ),
    ],
)
def test_explicit_table_errors_name_the_field(arms: list[ArmRequest], field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        explicit_table(empty_table("m"), arms, known={1, 2, 3, 4}, deployed=DEPLOYED)
    assert err.value.field == field
    assert words in err.value.detail


def test_rollback_targets_the_previous_stable_version() -> None:
    history = [RouteRevision(table(1, full(1)), "direct"), RouteRevision(table(2, full(2)), "direct")]
    assert previous_stable(history) == 1


def test_rollback_from_a_split_returns_to_the_last_version_that_took_everything() -> None:
    split = table(3, RouteArm(version=1, weight=80), RouteArm(version=2, weight=20))
    history = [
        RouteRevision(table(1, full(1)), "direct"),
        RouteRevision(table(2, full(1), RouteArm(version=2, weight=0)), "candidate"),
        RouteRevision(split, "explicit"),
    ]
    assert previous_stable(history) == 1


def test_rollback_never_returns_to_a_version_it_rolled_back_from() -> None:
    history = [
        RouteRevision(table(1, full(1)), "direct"),
        RouteRevision(table(2, full(2)), "direct"),
        RouteRevision(table(3, full(1)), "rollback"),
    ]
    with pytest.raises(Conflict):
        previous_stable(history)
    # Deployed again later, it is a fair target once more.
    history += [RouteRevision(table(4, full(2)), "direct"), RouteRevision(table(5, full(3)), "direct")]
    assert previous_stable(history) == 2


def test_rollback_without_an_earlier_stable_version_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        previous_stable([RouteRevision(table(1, full(1)), "direct")])
    with pytest.raises(Conflict):
        previous_stable([])


def test_a_quota_means_a_dedicated_deployment_otherwise_the_pool() -> None:
    assert placement_for("m", 1, None).kind == "pool"
    dedicated = placement_for("m", 2, ResourceQuota(num_cpus=1))
    assert (dedicated.kind, dedicated.app) == ("dedicated", "fleet-m-v2")
