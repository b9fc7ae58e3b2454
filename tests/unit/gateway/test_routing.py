"""Route tables as plain logic: weighted splits, sticky keys, shadows, stale revisions."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from fleet_core.events import RouteArm, RouteTable
from fleet_gateway.routing import NoRoute, RouteBook
from support.gateway import route


def book_with(*arms: RouteArm, revision: int = 1, seed: int = 7) -> RouteBook:
    book = RouteBook(rng=random.Random(seed).random)
    book.apply_snapshot([route("churn", list(arms), revision=revision)])
    return book


def test_weighted_split_is_within_three_points_over_2000_draws() -> None:
    book = book_with(
        RouteArm(version=1, weight=70), RouteArm(version=2, weight=20), RouteArm(version=3, weight=10)
    )
    counts = Counter(book.route_for("churn").version for _ in range(2000))
    for version, expected in ((1, 70), (2, 20), (3, 10)):
        assert abs(counts[version] / 2000 * 100 - expected) <= 3, counts


def test_weights_need_not_sum_to_100() -> None:
    book = book_with(RouteArm(version=1, weight=1), RouteArm(version=2, weight=3))
    counts = Counter(book.route_for("churn").version for _ in range(2000))
    assert abs(counts[2] / 2000 * 100 - 75) <= 3


def test_routing_keys_split_by_weight_and_stick() -> None:
    book = book_with(RouteArm(version=1, weight=50, sticky=True), RouteArm(version=2, weight=50, sticky=True))
    first = {f"user-{i}": book.route_for("churn", f"user-{i}").version for i in range(2000)}
    again = {key: book.route_for("churn", key).version for key in first}
    assert first == again
    share = sum(1 for v in first.values() if v == 2) / 2000 * 100
    assert abs(share - 50) <= 3


def test_sticky_assignment_survives_a_resync_of_the_same_table() -> None:
    book = book_with(RouteArm(version=1, weight=50), RouteArm(version=2, weight=50))
    before = [book.route_for("churn", f"k{i}").version for i in range(200)]
    book.apply_snapshot([route("churn", [RouteArm(version=1, weight=50), RouteArm(version=2, weight=50)])])
    assert [book.route_for("churn", f"k{i}").version for i in range(200)] == before


def test_shadow_arms_never_answer_and_are_returned_for_mirroring() -> None:
    book = book_with(RouteArm(version=1, weight=100), RouteArm(version=2, weight=100, mode="shadow"))
    decisions = [book.route_for("churn", f"k{i}") for i in range(500)] + [
        book.route_for("churn") for _ in range(500)
    ]
    assert {d.version for d in decisions} == {1}
    assert all([s.version for s in d.shadows] == [2] for d in decisions)


def test_a_table_with_only_shadows_has_no_route() -> None:
    book = book_with(RouteArm(version=2, weight=100, mode="shadow"))
    with pytest.raises(NoRoute):
        book.route_for("churn")


def test_stale_revisions_are_ignored() -> None:
    book = book_with(RouteArm(version=1, weight=100), RouteArm(version=2, weight=0), revision=5)
    assert not book.apply_table(RouteTable(model="churn", revision=4, arms=[RouteArm(version=2, weight=100)]))
    assert not book.apply_table(RouteTable(model="churn", revision=5, arms=[RouteArm(version=2, weight=100)]))
    assert book.route_for("churn").version == 1
    assert book.apply_table(RouteTable(model="churn", revision=6, arms=[RouteArm(version=2, weight=100)]))
    assert book.route_for("churn").version == 2
    # A deployer snapshot older than the event we already applied does not roll us back.
    book.apply_snapshot(
        [route("churn", [RouteArm(version=1, weight=100), RouteArm(version=2, weight=0)], revision=5)]
    )
    assert book.route_for("churn").version == 2


def test_a_table_naming_an_unknown_version_reports_it_missing() -> None:
    book = book_with(RouteArm(version=1, weight=100))
    book.apply_table(RouteTable(model="churn", revision=2, arms=[RouteArm(version=3, weight=100)]))
    assert book.missing_versions("churn") == [3]
    assert book.served("churn", 3) is None


def test_unknown_model_has_no_route() -> None:
    with pytest.raises(NoRoute):
        RouteBook().route_for("nope")
