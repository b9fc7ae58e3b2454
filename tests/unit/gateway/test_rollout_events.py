"""``rollout.updated`` messages as the follower applies them (decoding and staleness, no broker)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from fleet_core.events import RolloutUpdated, RouteArm, RouteTable, Topic, make_event
from fleet_gateway.events import RolloutFollower
from fleet_gateway.metrics import GatewayMetrics
from fleet_gateway.routing import RouteBook
from support.gateway import route


async def _no_refresh(model: str) -> None:
    return None


def follower(book: RouteBook) -> RolloutFollower:
    return RolloutFollower(
        ["127.0.0.1:1"], book, GatewayMetrics(CollectorRegistry()), on_unknown_versions=_no_refresh
    )


def message(revision: int, arms: list[RouteArm]) -> bytes:
    table = RouteTable(model="churn", revision=revision, arms=arms)
    update = RolloutUpdated(
        rollout_id="ro-1",
        model="churn",
        version=2,
        strategy="canary",
        phase="progressing",
        step=1,
        routes=table,
    )
    return make_event(Topic.ROLLOUT_UPDATED, update, source="deployer").to_bytes()


def test_a_newer_table_is_applied_and_an_older_one_ignored() -> None:
    book = RouteBook()
    book.apply_snapshot(
        [route("churn", [RouteArm(version=1, weight=100), RouteArm(version=2, weight=0)], revision=2)]
    )
    f = follower(book)
    f.apply(message(3, [RouteArm(version=1, weight=75), RouteArm(version=2, weight=25)]))
    assert book.table("churn").revision == 3  # type: ignore[union-attr]
    f.apply(message(1, [RouteArm(version=2, weight=100)]))
    assert [a.weight for a in book.table("churn").arms] == [75, 25]  # type: ignore[union-attr]


def test_a_poison_message_is_skipped() -> None:
    book = RouteBook()
    assert follower(book).apply(b"not an event") is None
    assert book.models() == []
