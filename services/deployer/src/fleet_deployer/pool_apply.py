"""One pool reconfiguration for many changes: the shared pool's config is applied in rounds.

Applying the pool's config costs the same (~0.5 s of Serve work) whether one version changed or a
thousand, and the config it applies is read from the database when the round starts. So a caller
does not apply the pool itself; it asks for a round that *started after* its change was committed
(``ensure(committed_at)``):

- a finished round that started after ``committed_at`` already covers it: nothing to do;
- the round running now covers it if it started after ``committed_at``; otherwise the caller joins
  the next round, which starts when the running one ends.

Every caller that arrives while a round runs shares the one next round, so a burst of N
registrations costs about two applies, not N. A burst that trickles in (a bulk onboarding uploads
a few models a second) would still cost one round per round-time; so a round that follows another
one first waits until no caller has joined it for ``settle_s``, at most ``max_settle_s`` or as
long as the last round took, whichever is longer. A round applies the whole pool, so its cost grows
with the pool; waiting as long as the last one took keeps Serve busy at most half of a long bulk
onboarding however large the pool has grown. A lone change, with no round running, is applied at
once. A failed round fails every caller that joined
it (each then marks its own deployment failed), and the next caller starts a fresh round.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram


class PoolMetrics:
    """``fleet_deployer_pool_applies_total`` and how long a round takes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.applies = Counter(
            "fleet_deployer_pool_applies",
            "Reconfigurations of the shared pool (one per round, however many versions changed)",
            ["outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "fleet_deployer_pool_apply_duration_seconds",
            "Time to apply the shared pool's config",
            registry=registry,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.waiters = Histogram(
            "fleet_deployer_pool_apply_waiters",
            "Callers served by one pool round",
            registry=registry,
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
        )


class PoolApplier:
    """Coalesces pool reconfigurations into rounds (see the module docstring)."""

    def __init__(
        self,
        apply: Callable[[], Awaitable[None]],
        *,
        metrics: PoolMetrics | None = None,
        settle_s: float = 0.5,
        max_settle_s: float = 3.0,
    ) -> None:
        self._apply = apply
        self._metrics = metrics
        self._settle_s = settle_s
        self._max_settle_s = max_settle_s
        self._last_join = 0.0
        self._next: asyncio.Future[None] | None = None
        """The round callers join while another one runs; starts when that one ends."""
        self._next_waiters = 0
        self._running_started: float | None = None
        self._running: asyncio.Task[None] | None = None
        self._done_started = -float("inf")
        """When the newest successful round started: changes committed before that are applied."""
        self._last_round_s = 0.0
        self.rounds = 0

    async def ensure(self, committed_at: float | None = None) -> None:
        """Return once a round that started after ``committed_at`` (default: now) has succeeded;
        raise that round's error if it failed."""
        since = time.monotonic() if committed_at is None else committed_at
        if self._done_started >= since:
            return
        if self._running is not None and self._running_started is not None and self._running_started >= since:
            await asyncio.shield(self._running)
            return
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next_waiters = 0
            asyncio.get_running_loop().create_task(self._start_after(self._running, self._next))
        self._next_waiters += 1
        self._last_join = time.monotonic()
        await asyncio.shield(self._next)

    async def _start_after(self, previous: asyncio.Task[None] | None, round_: asyncio.Future[None]) -> None:
        try:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
                await self._settle()
            self._next = None
            waiters = self._next_waiters
            started = time.monotonic()
            self._running_started = started
            self._running = asyncio.get_running_loop().create_task(self._round(started, waiters))
            await self._running
        except asyncio.CancelledError:
            round_.cancel()
        except BaseException as exc:
            round_.set_exception(exc)
            round_.exception()  # retrieved: every waiter re-raises it from the shield
        else:
            round_.set_result(None)
        finally:
            if self._next is round_:  # failed before it started: later callers start a fresh one
                self._next = None

    async def _settle(self) -> None:
        """A burst under way: gather what is still arriving before the next round starts."""
        waited_from = time.monotonic()
        longest = max(self._max_settle_s, self._last_round_s)
        while True:
            quiet = time.monotonic() - self._last_join
            left = longest - (time.monotonic() - waited_from)
            if quiet >= self._settle_s or left <= 0:
                return
            await asyncio.sleep(min(self._settle_s - quiet, left))

    async def _round(self, started: float, waiters: int) -> None:
        self.rounds += 1
        try:
            await self._apply()
        except BaseException:
            if self._metrics is not None:
                self._metrics.applies.labels("failed").inc()
            raise
        finally:
            self._last_round_s = time.monotonic() - started
            if self._metrics is not None:
                self._metrics.duration.observe(self._last_round_s)
                self._metrics.waiters.observe(waiters)
        if self._metrics is not None:
            self._metrics.applies.labels("ok").inc()
        self._done_started = max(self._done_started, started)
