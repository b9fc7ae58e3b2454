"""Byte-budgeted LRU bookkeeping of one pool replica's loaded models (plain Python, no Ray).

``ModelPool`` keeps Serve's multiplex wrapper, for its model-affinity routing and its LRU order
(``wrapper.models``); ``ModelLedger`` charges every loaded model the bytes measured when it was
loaded and decides which models to unload, least recently used first and never one with a call in
flight, so that the replica's loaded bytes stay within its budget (and its count within a
secondary bound).

How a model's bytes are measured (``charge``): the replica's resident set size (RSS) just before
and just after the load, the difference floored by the artifact's size and by ``MIN_MODEL_BYTES``.
An RSS delta alone is noisy for small models: a model's objects often land in allocator arenas
the process already holds (a delta of 0), or the delta includes a library the first load imported
and memory a concurrent request allocated. The artifact size is a floor we can trust for the
flavors the pool serves: a loaded skops model takes ~0.7x its file, an onnxruntime session 4-5x.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

EvictionReason = Literal["bytes", "count"]


@dataclass(frozen=True)
class Eviction:
    key: str
    bytes: int
    reason: EvictionReason


class ModelLedger:
    """Bytes charged to each loaded model of one replica, and the LRU-by-bytes eviction plan.

    ``budget_bytes`` None: no byte bound; ``max_models`` None: no count bound. The ledger never
    unloads anything itself: the pool asks it for a plan, unloads, and reports back.
    """

    def __init__(self, budget_bytes: int | None, max_models: int | None = None) -> None:
        self.budget_bytes = budget_bytes
        self.max_models = max_models
        self._charged: dict[str, int] = {}
        self._measured: dict[str, int] = {}
        """The last measurement of every key ever loaded here, kept after it is unloaded: the best
        guess of what reloading it will take."""
        self.refused: dict[str, int] = {}
        """Keys whose measured bytes alone exceed the budget, with those bytes."""
        self.evictions_by_bytes = 0
        self.evictions_by_count = 0
        self.evicted_bytes = 0

    # ------------------------------------------------------------------ reading

    @property
    def loaded_bytes(self) -> int:
        return sum(self._charged.values())

    @property
    def over_budget(self) -> bool:
        return self.budget_bytes is not None and self.loaded_bytes > self.budget_bytes

    def charged(self, key: str) -> int:
        """Bytes charged to a loaded key (0 if it is not loaded)."""
        return self._charged.get(key, 0)

    def __contains__(self, key: object) -> bool:
        return key in self._charged

    def __len__(self) -> int:
        return len(self._charged)

    def expected(self, key: str, estimate: int) -> int:
        """What loading ``key`` is expected to take: its last measurement here, else ``estimate``."""
        return self._measured.get(key, estimate)

    def fits_alone(self, nbytes: int) -> bool:
        """Whether a model of ``nbytes`` fits an empty replica."""
        return self.budget_bytes is None or nbytes <= self.budget_bytes

    # ------------------------------------------------------------------ planning

    def plan(
        self, lru_order: Iterable[str], incoming_bytes: int, busy: Callable[[str], bool], *, incoming: int = 1
    ) -> tuple[list[Eviction], bool]:
        """Which loaded models to unload, least recently used first, so that ``incoming`` more
        models of ``incoming_bytes`` in all fit the budget and the count bound. A ``busy`` model
        (a call in flight) is skipped. Returns the evictions and whether everything then fits;
        when it does not (the rest are busy), the caller loads anyway and the sweeper evicts the
        excess once those calls finish."""
        order = list(lru_order)
        over_bytes = (
            self.loaded_bytes + incoming_bytes - self.budget_bytes if self.budget_bytes is not None else 0
        )
        over_count = len(order) + incoming - self.max_models if self.max_models is not None else 0
        evictions: list[Eviction] = []
        for key in order:
            if over_bytes <= 0 and over_count <= 0:
                break
            if busy(key):
                continue
            nbytes = self.charged(key)
            evictions.append(Eviction(key, nbytes, "bytes" if over_bytes > 0 else "count"))
            over_bytes -= nbytes
            over_count -= 1
        return evictions, over_bytes <= 0 and over_count <= 0

    # ------------------------------------------------------------------ recording

    def loaded(self, key: str, nbytes: int) -> None:
        self._charged[key] = nbytes
        self._measured[key] = nbytes
        self.refused.pop(key, None)

    def refuse(self, key: str, nbytes: int) -> None:
        """``key`` measured ``nbytes`` > budget: it was unloaded at once and is not kept."""
        self._measured[key] = nbytes
        self.refused[key] = nbytes

    def evicted(self, eviction: Eviction) -> None:
        self._charged.pop(eviction.key, None)
        self.evicted_bytes += eviction.bytes
        if eviction.reason == "bytes":
            self.evictions_by_bytes += 1
        else:
            self.evictions_by_count += 1

    def unloaded(self, key: str) -> None:
        """Unloaded for another reason (idle, no longer configured)."""
        self._charged.pop(key, None)

    def forget_missing(self, loaded: Iterable[str]) -> None:
        """Drop charges of keys the cache no longer holds (unloaded behind the ledger's back)."""
        keep = set(loaded)
        for key in [k for k in self._charged if k not in keep]:
            del self._charged[key]
