"""Rendezvous placement with a load bound: which pool replicas a model key may use."""

from __future__ import annotations

import random
import string
from collections import Counter

from fleet_core.placement import replica_order, spread


def names(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(string.ascii_lowercase + string.digits, k=8)) for _ in range(n)]


KEYS = [f"model-{i:04d}:1" for i in range(1000)]


def test_every_key_has_a_stable_order_whatever_the_listing_order() -> None:
    replicas = names(4)
    for key in KEYS[:50]:
        assert replica_order(key, replicas) == replica_order(key, list(reversed(replicas)))


def test_keys_spread_evenly_over_replicas() -> None:
    for n in (2, 3, 4):
        first = Counter(replica_order(key, names(n, seed=n))[0] for key in KEYS)
        assert len(first) == n
        assert max(first.values()) < 1.25 * len(KEYS) / n


def test_a_new_replica_takes_only_its_share_of_keys() -> None:
    before = names(3)
    after = [*before, "newcomer"]
    moved = [k for k in KEYS if replica_order(k, before)[0] != replica_order(k, after)[0]]
    assert all(replica_order(k, after)[0] == "newcomer" for k in moved)
    assert 0.15 < len(moved) / len(KEYS) < 0.35  # about 1/4


def test_a_lost_replicas_keys_fall_to_their_next_replica() -> None:
    replicas = names(4)
    lost = replicas[0]
    survivors = replicas[1:]
    for key in KEYS:
        order = replica_order(key, replicas)
        if order[0] == lost:
            assert replica_order(key, survivors)[0] == order[1]
        else:
            assert replica_order(key, survivors)[0] == order[0]


def test_a_quiet_key_uses_only_its_first_replica() -> None:
    assert spread(["a", "b", "c"], hot=lambda r: False, full=lambda r: False, max_replicas=2) == ["a"]


def test_a_hot_key_spills_to_its_next_replica_up_to_the_bound() -> None:
    order = ["a", "b", "c", "d"]
    hot = {"a", "b", "c"}.__contains__
    never = lambda r: False  # noqa: E731
    assert spread(order, hot=hot, full=never, max_replicas=2) == ["a", "b"]
    assert spread(order, hot=hot, full=never, max_replicas=3) == ["a", "b", "c"]
    assert spread(order, hot={"a"}.__contains__, full=never, max_replicas=3) == ["a", "b"]


def test_past_the_bound_only_full_replicas_widen_the_choice() -> None:
    full = {"a", "b", "c"}
    got = spread(["a", "b", "c", "d"], hot=lambda r: True, full=full.__contains__, max_replicas=2)
    assert got == ["a", "b", "c", "d"]
    # a full first replica widens even a key that is not hot
    assert spread(["a", "b"], hot=lambda r: False, full={"a"}.__contains__, max_replicas=1) == ["a", "b"]
