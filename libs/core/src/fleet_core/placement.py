"""Which pool replicas may serve a model: rendezvous hashing with a load bound.

Each model key ranks the pool's replicas by a stable hash of (key, replica) (highest random
weight, "rendezvous" hashing). A request goes to the key's first replica; only while that replica
is hot for the key (a threshold of the key's own requests in flight there) does the next one in
the key's order join, and so on up to ``max_replicas`` (further only past replicas that are
completely full). So:

- a model is loaded on one replica, or a few while it is hot, never on all of them;
- every router (each gateway process) computes the same order, so they agree without talking;
- when a replica joins or leaves, only the keys that rank it first move (about 1/n of them), and a
  dead replica's keys fall to their next replica, which is already their overflow.

This is "consistent hashing with bounded loads" (Mirrokni, Thorup, Zadimoghaddam 2018) on
rendezvous hashing. Plain Python: the Ray Serve router (``fleet_serving.pool_router``) calls it.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

R = TypeVar("R")


def _weight(key: str, replica: str) -> bytes:
    return hashlib.blake2b(f"{key}\0{replica}".encode(), digest_size=8).digest()


def replica_order(key: str, replicas: Iterable[R], name: Callable[[R], str] = str) -> list[R]:
    """``replicas`` in the order ``key`` prefers them (stable for a given set of names)."""
    return sorted(replicas, key=lambda r: _weight(key, name(r)), reverse=True)


def spread(
    order: Sequence[R],
    *,
    hot: Callable[[R], bool],
    full: Callable[[R], bool],
    max_replicas: int,
) -> list[R]:
    """The replicas a request for a key may go to, from the key's ``order``.

    The first replica always; the next one only while every replica taken so far is ``hot`` for
    this key (has its threshold of the key's requests in flight) or ``full`` (would refuse any
    request). Past ``max_replicas`` a replica is added only while the last one taken is ``full``,
    so an overloaded pool still answers rather than queueing forever.
    """
    chosen: list[R] = []
    for replica in order:
        if chosen and len(chosen) >= max_replicas and not full(chosen[-1]):
            break
        chosen.append(replica)
        if not (hot(replica) or full(replica)):
            break
    return chosen


# ---------------------------------------------------------------------------------------------
# Pool views: what the router in this process knows, for callers that batch across models.

DIRECTIVE_PREFIX = "@replica:"
"""A routing key naming a replica, not a model: a call that carries several models' rows goes to
the replica the caller chose for them (the router sends it elsewhere only if that one is gone)."""


def replica_directive(replica: str) -> str:
    return DIRECTIVE_PREFIX + replica


def directed_replica(key: str) -> str | None:
    """The replica a directive key names, or None for a model key."""
    return key[len(DIRECTIVE_PREFIX) :] if key.startswith(DIRECTIVE_PREFIX) else None


class PoolView(Protocol):
    """A pool router's current view, as a caller that places models itself needs it."""

    hot_ongoing: float
    max_replicas_per_model: int

    def replica_names(self) -> Sequence[str]:
        """The replicas that may take calls now (live, not lately unreachable)."""
        ...


_VIEWS: dict[tuple[str, str], weakref.ref[Any]] = {}


def publish_view(app: str, deployment: str, view: PoolView) -> None:
    """The router of (``app``, ``deployment``) in this process; the newest one wins."""
    _VIEWS[(app, deployment)] = weakref.ref(view)


def pool_view(app: str, deployment: str) -> PoolView | None:
    ref = _VIEWS.get((app, deployment))
    return ref() if ref is not None else None
