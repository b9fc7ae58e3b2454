"""``PoolRouter``: the Ray Serve request router of the shared pool (affinity with hot-model spread).

Serve's default multiplexed routing sends a model to a replica that already holds it and moves
it elsewhere only when that replica refuses requests (``max_ongoing_requests`` in flight), so a hot
model stays pinned to one replica (ray #48741, #65691), and a replica added by the autoscaler gets
no share of the models already loaded. This router places each model key by
``fleet_core.placement``: rendezvous order over the live replicas, widened to the next replica
while the ones before it are hot for that model. It also keeps a replica that just failed to answer
(``ActorUnavailableError``: its node is gone but Ray has not declared it dead yet, which takes
seconds) out of every key's order for ``unavailable_hold_s``, so a retry lands on a live replica.

Serve builds one router per handle in the *calling* process (the gateway), and ships this module
by value (cloudpickle), so it may import only the standard library, Ray and ``fleet_core``: the
gateway's image has no ``fleet_serving``.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

from fleet_core.placement import directed_replica, publish_view, replica_order, spread

POOL_ROUTER_PATH = "fleet_serving.pool_router:PoolRouter"
DEFAULT_HOT_ONGOING = 4
DEFAULT_MAX_REPLICAS_PER_MODEL = 2
DEFAULT_UNAVAILABLE_HOLD_S = 10.0
ROUTED_TTL_S = 120.0
"""A call not reported completed after this long no longer counts as in flight (the gateway's
own deadline is 30 s)."""


class PoolRouter(RequestRouter):
    """Routes a pool request to its model's first replica, spilling to the next while it is hot.

    "Hot" counts the model's own requests this router has in flight at a replica, not the
    replica's total: a replica busy loading other models must not spread this one. "Full" is
    Serve's own view (the replica's total at ``max_ongoing_requests``)."""

    def initialize_state(
        self,
        hot_ongoing_requests: float = DEFAULT_HOT_ONGOING,
        max_replicas_per_model: int = DEFAULT_MAX_REPLICAS_PER_MODEL,
        unavailable_hold_s: float = DEFAULT_UNAVAILABLE_HOLD_S,
        **_: Any,
    ) -> None:
        self.hot_ongoing = float(hot_ongoing_requests)
        self.max_replicas_per_model = max(1, int(max_replicas_per_model))
        self.unavailable_hold_s = float(unavailable_hold_s)
        self._unavailable: dict[ReplicaID, float] = {}
        self._routed: dict[str, tuple[tuple[str, ReplicaID], float]] = {}
        self._last_sweep = time.monotonic()
        self._in_flight: Counter[tuple[str, ReplicaID]] = Counter()
        # The gateway's batcher places models itself with this view (``fleet_core.placement``).
        publish_view(self._deployment_id.app_name, self._deployment_id.name, self)

    def _state(self) -> None:
        # initialize_state runs only when the deployment passes kwargs; keep defaults otherwise.
        if not hasattr(self, "_in_flight"):
            self.initialize_state()

    # ------------------------------------------------------------------ bookkeeping (Serve's hooks)

    def _fulfill_next_pending_request(self, replica: RunningReplica, request_metadata: Any = None) -> None:
        # The one moment that knows both the request (its model) and the replica it goes to: a
        # call counts as in flight from here until Serve reports it completed. (Serve's
        # ``on_request_routed`` is no use for this: over gRPC it fires with the answer.)
        pending = self._get_pending_request_matching_internal_request_id(request_metadata)
        super()._fulfill_next_pending_request(replica, request_metadata)
        if pending is None or not pending.future.done() or pending.future.cancelled():
            return
        key = pending.metadata.multiplexed_model_id
        if key:
            self._state()
            slot = (key, replica.replica_id)
            self._routed[pending.metadata.internal_request_id] = (slot, time.monotonic())
            self._in_flight[slot] += 1

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        self._state()
        routed = self._routed.pop(internal_request_id, None)
        if routed is not None:
            self._release(routed[0])

    def _release(self, slot: tuple[str, ReplicaID]) -> None:
        self._in_flight[slot] -= 1
        if self._in_flight[slot] <= 0:
            del self._in_flight[slot]

    def _forget_stale(self) -> None:
        """Drop calls never reported completed (a caller cancelled between choice and send)."""
        now = time.monotonic()
        if now - self._last_sweep < ROUTED_TTL_S:
            return
        self._last_sweep = now
        for request_id, (slot, since) in list(self._routed.items()):
            if now - since > ROUTED_TTL_S:
                del self._routed[request_id]
                self._release(slot)

    def on_replica_actor_unavailable(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_unavailable(replica_id)
        self._state()
        self._unavailable[replica_id] = time.monotonic()

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self._state()
        self._unavailable.pop(replica_id, None)

    # ------------------------------------------------------------------ choice

    def replica_names(self) -> list[str]:
        """``PoolView``: the replicas a caller placing models itself may pick from now."""
        self._state()
        return [r.replica_id.unique_id for r in self._reachable(list(self._replicas.values()))]

    def _reachable(self, replicas: list[RunningReplica]) -> list[RunningReplica]:
        """Replicas that have not failed to answer lately (all of them if none qualifies)."""
        if not self._unavailable:
            return replicas
        now = time.monotonic()
        for replica_id, since in list(self._unavailable.items()):
            if now - since > self.unavailable_hold_s or replica_id not in self._replicas:
                del self._unavailable[replica_id]
        return [r for r in replicas if r.replica_id not in self._unavailable] or replicas

    def _full(self, replica: RunningReplica) -> bool:
        ongoing = self._replica_queue_len_cache.get(replica.replica_id)
        return ongoing is not None and ongoing >= replica.max_ongoing_requests

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        self._state()
        self._forget_stale()
        if pending_request is not None:
            # Back off between rounds when no candidate accepts (the base loop spins otherwise).
            pending_request.routing_context.should_backoff = True
        replicas = self._reachable(candidate_replicas)
        if not replicas:
            return []
        key = pending_request.metadata.multiplexed_model_id if pending_request is not None else ""
        if not key:  # not a model call (stats, health): any replica, uniformly
            return [[random.choice(replicas)]]
        target = directed_replica(key)
        if target is not None:  # several models' rows for the replica the caller chose
            chosen = [r for r in replicas if r.replica_id.unique_id == target]
            return [chosen or [random.choice(replicas)]]
        order = replica_order(key, replicas, lambda r: r.replica_id.unique_id)
        return [
            spread(
                order,
                hot=lambda r: self._in_flight.get((key, r.replica_id), 0) >= self.hot_ongoing,
                full=self._full,
                max_replicas=self.max_replicas_per_model,
            )
        ]
