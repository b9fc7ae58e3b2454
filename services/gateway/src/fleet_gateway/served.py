"""Which requests this gateway instance answered recently: what ``/v1/feedback`` may label.

Plain Python. Per model, the ids of its most recent successful predictions (at most
``per_model``, none older than ``window_s``) with the version that answered and how many rows it
had, so feedback can only label traffic the model really served, with one label per row. The
memory is this process's: it is lost on restart and not shared between gateway instances.
``FeedbackReceipts`` is the stateless alternative that works across instances: a signed receipt
returned with each answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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


class FeedbackReceipts:
    """Stateless proof that a gateway answered a request: ``X-Fleet-Feedback-Receipt``.

    An HMAC, keyed from the gateway's ``FLEET_PII_SALT`` (the same on every instance), over the
    model, request id, answering version and row count. Feedback that carries it is accepted by any
    instance, after a restart too, for ``ttl_s``; without it only this process's memory counts."""

    PREFIX = "r1"

    def __init__(self, salt: str, *, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(salt.encode(), b"fleet-feedback-receipt", hashlib.sha256).digest()
        self._ttl_s = ttl_s
        self._clock = clock

    def _mac(self, model: str, request_id: str, version: int, rows: int, issued: int) -> str:
        message = "\x00".join([model, request_id, str(version), str(rows), str(issued)]).encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode()

    def issue(self, model: str, request_id: str, *, version: int, rows: int) -> str:
        issued = int(self._clock())
        mac = self._mac(model, request_id, version, rows, issued)
        return f"{self.PREFIX}.{version}.{rows}.{issued}.{mac}"

    def verify(self, receipt: str, model: str, request_id: str) -> ServedRequest | None:
        """The request the receipt vouches for, or None when it is forged, altered or too old."""
        parts = receipt.split(".")
        if len(parts) != 5 or parts[0] != self.PREFIX or not all(p.isdigit() for p in parts[1:4]):
            return None
        version, rows, issued = (int(p) for p in parts[1:4])
        expected = self._mac(model, request_id, version, rows, issued)
        if not hmac.compare_digest(expected, parts[4]):
            return None
        if self._clock() - issued > self._ttl_s:
            return None
        return ServedRequest(version, rows, float(issued))
