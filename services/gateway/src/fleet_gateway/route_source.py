"""Route tables from the deployer: bootstrap at start, periodic re-sync, on-demand re-fetch.

``GET {deployer_url}/v1/routes`` returns a ``RoutesSnapshot``; the gateway authenticates with a
short-lived token it mints itself from ``FLEET_JWT_SECRET``: ``viewer`` of every team (``*``), the
least that reads every route table. A deployer that is down at start does not stop the gateway:
the bootstrap retries in the background with backoff and the gateway reports not ready until a
snapshot is loaded.

A request that names a model or version the cache does not know looks that one model up
(``GET /v1/routes/{model}``) before it answers, so a model the deployer has just reported
``ready`` is served, not 404: the deployer commits the route table and the ``ready`` state in one
transaction, so whoever saw ``ready`` finds the route. Look-ups are coalesced per model, a model the
deployer does not know is not asked about again for ``routes_refresh_min_interval_s``, at most
``LOOKUP_CONCURRENCY`` run at once, and answers of "unknown" are budgeted to
``routes_unknown_lookups_per_s`` over all names, with a burst of ten seconds' worth (a client
probing random names cannot flood the deployer; a look-up that finds its model costs no budget).
With 1,000 models this costs one small read per new model, where re-fetching the whole snapshot on
every fresh deploy would cost the deployer a thousand.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from datetime import timedelta
from urllib.parse import quote

import httpx

from fleet_core.auth import ALL_TEAMS, Role, TokenAuthority
from fleet_core.log import get_logger
from fleet_core.serving import ModelRoute, RoutesSnapshot
from fleet_gateway.metrics import GatewayMetrics
from fleet_gateway.routing import RouteBook

log = get_logger(__name__)

SERVICE_SUBJECT = "service:gateway"
MAX_REMEMBERED_MISSES = 10_000
LOOKUP_CONCURRENCY = 16


class DeployerRouteSource:
    """Keeps a ``RouteBook`` in step with the deployer's snapshot."""

    def __init__(
        self,
        book: RouteBook,
        tokens: TokenAuthority,
        metrics: GatewayMetrics,
        *,
        deployer_url: str,
        resync_s: float,
        refresh_min_interval_s: float,
        timeout_s: float,
        max_backoff_s: float = 10.0,
        unknown_lookups_per_s: float = 20.0,
    ) -> None:
        self._book = book
        self._tokens = tokens
        self._metrics = metrics
        self._url = deployer_url.rstrip("/") + "/v1/routes"
        self._model_url = self._url + "/"
        self._resync_s = resync_s
        self._min_interval_s = refresh_min_interval_s
        self._max_backoff_s = max_backoff_s
        self._client = httpx.AsyncClient(timeout=timeout_s)
        self._task: asyncio.Task[None] | None = None
        self._lookups: dict[str, asyncio.Task[bool]] = {}
        self._misses: OrderedDict[str, float] = OrderedDict()
        """Models the deployer said it does not know, and when; not asked again for an interval."""
        self._miss_rate = unknown_lookups_per_s
        self._miss_tokens = self._miss_burst = max(1.0, 10 * unknown_lookups_per_s)
        self._miss_at = time.monotonic()
        self._lookup_slots = asyncio.Semaphore(LOOKUP_CONCURRENCY)
        self.last_error: str | None = "not fetched yet"

    def _token(self) -> str:
        # Reading every team's routes is all the gateway does with the deployer: viewer of '*'.
        token, _, _ = self._tokens.issue(SERVICE_SUBJECT, Role.VIEWER, [ALL_TEAMS], ttl=timedelta(minutes=5))
        return token

    async def fetch(self) -> RoutesSnapshot:
        response = await self._client.get(self._url, headers={"Authorization": f"Bearer {self._token()}"})
        response.raise_for_status()
        return RoutesSnapshot.model_validate_json(response.content)

    async def sync(self) -> bool:
        """Fetch and apply one snapshot; False (logged) when the deployer could not be read."""
        try:
            snapshot = await self.fetch()
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._metrics.route_updates.labels("deployer", "failed").inc()
            log.warning("cannot read routes from the deployer", url=self._url, error=self.last_error)
            return False
        self._book.apply_snapshot(snapshot.models)
        self.last_error = None
        self._metrics.route_updates.labels("deployer", "applied").inc()
        return True

    async def lookup(self, model: str) -> bool:
        """Fetch one model's route now (coalesced per model); True when the book has it after."""
        running = self._lookups.get(model)
        if running is not None:
            return await asyncio.shield(running)
        missed = self._misses.get(model)
        if missed is not None and time.monotonic() - missed < self._min_interval_s:
            return False
        if not self._miss_budget_left():
            self._metrics.route_updates.labels("lookup", "throttled").inc()
            return False
        self._miss_tokens -= 1  # reserved; given back when the model turns out to exist
        task = asyncio.create_task(self._lookup(model))
        self._lookups[model] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._lookups.pop(model, None)

    def _miss_budget_left(self) -> bool:
        now = time.monotonic()
        self._miss_tokens = min(self._miss_burst, self._miss_tokens + (now - self._miss_at) * self._miss_rate)
        self._miss_at = now
        return self._miss_tokens >= 1

    async def _lookup(self, model: str) -> bool:
        try:
            async with self._lookup_slots:
                response = await self._client.get(
                    self._model_url + quote(model, safe=""),
                    headers={"Authorization": f"Bearer {self._token()}"},
                )
            if response.status_code == 404:
                self._misses[model] = time.monotonic()
                self._misses.move_to_end(model)
                while len(self._misses) > MAX_REMEMBERED_MISSES:
                    self._misses.popitem(last=False)
                self._metrics.route_updates.labels("lookup", "unknown").inc()
                return False
            response.raise_for_status()
            route = ModelRoute.model_validate_json(response.content)
        except Exception as exc:
            self._metrics.route_updates.labels("lookup", "failed").inc()
            log.warning(
                "cannot look a model up in the deployer", model=model, error=f"{type(exc).__name__}: {exc}"
            )
            return False
        finally:
            self._lookups.pop(model, None)
        self._misses.pop(model, None)
        self._miss_tokens = min(self._miss_burst, self._miss_tokens + 1)
        self._book.apply_route(route)
        self._metrics.route_updates.labels("lookup", "applied").inc()
        return self._book.knows(model)

    async def refresh_model(self, model: str, attempts: int = 5) -> None:
        """A route update named versions this gateway cannot serve yet: fetch until it can.

        A look-up that was already in flight may predate the update, and the version may still be
        deploying, so it asks a few times."""
        for attempt in range(attempts):
            self._misses.pop(model, None)  # the update says it exists now
            await self.lookup(model)
            if self._book.knows(model) and not self._book.missing_versions(model):
                return
            # Still deploying, or throttled: ask again shortly.
            await asyncio.sleep(min(0.1 * 2**attempt, max(self._min_interval_s, 0.1)))
        log.warning("route update names versions the deployer does not list", model=model)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="route-source")

    async def _run(self) -> None:
        backoff = 0.2
        while not await self.sync():
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)
        log.info("routes bootstrapped from the deployer", models=len(self._book.models()))
        while True:
            await asyncio.sleep(self._resync_s)
            await self.sync()

    async def stop(self) -> None:
        for task in (self._task, *self._lookups.values()):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._client.aclose()
