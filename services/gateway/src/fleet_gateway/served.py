"""Which requests this gateway instance answered recently: what ``/v1/feedback`` may label.

Plain Python. Per model, the ids of its most recent successful predictions (at most
``per_model``, none older than ``window_s``) with the version that answered and how many rows it
had, so feedback can only label traffic the model really served, with one label per row. The
memory is this process's: it is lost on restart and not shared between gateway instances.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServedRequest:
    """One answered request: the version that answered, its row count, when (monotonic)."""

    version: int
    rows: int
    at: float


class ServedRequests:
    """A bounded, expiring memory of answered request ids, one LRU per model.

    One LRU per model, so one team's traffic cannot push another team's requests out."""

    def __init__(
        self, *, per_model: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._per_model = per_model
        self._window_s = window_s
        self._clock = clock
        self._models: dict[str, OrderedDict[str, ServedRequest]] = {}

    def remember(self, model: str, request_id: str, *, version: int, rows: int) -> None:
        if not request_id:
            return
        now = self._clock()
        recent = self._models.setdefault(model, OrderedDict())
        recent.pop(request_id, None)
        recent[request_id] = ServedRequest(version, rows, now)
        while len(recent) > self._per_model:
            recent.popitem(last=False)
        self._expire(recent, now)

    def get(self, model: str, request_id: str) -> ServedRequest | None:
        """The request, if ``model`` answered it within the window and it is still remembered."""
        recent = self._models.get(model)
        if recent is None:
            return None
        self._expire(recent, self._clock())
        return recent.get(request_id)

    def __len__(self) -> int:
        return sum(len(r) for r in self._models.values())

    def _expire(self, recent: OrderedDict[str, ServedRequest], now: float) -> None:
        # Entries are in the order they were answered, so the expired ones are at the front.
        while recent:
            oldest = next(iter(recent.values()))
            if now - oldest.at <= self._window_s:
                break
            recent.popitem(last=False)
