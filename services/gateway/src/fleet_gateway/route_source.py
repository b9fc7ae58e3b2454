"""Route tables from the deployer: bootstrap at start, periodic re-sync, on-demand re-fetch.

``GET {deployer_url}/v1/routes`` returns a ``RoutesSnapshot``; the gateway authenticates with a
short-lived token it mints itself from ``FLEET_JWT_SECRET``: ``viewer`` of every team (``*``), the
least that reads every route table. A deployer that is down at start does not stop the gateway:
the bootstrap retries in the background with backoff and the gateway reports not ready until a
snapshot is loaded. A request that names a model or version the cache does not know triggers a
re-fetch, coalesced and at most one per ``routes_refresh_min_interval_s``, so a fresh deploy is
served without waiting for the re-sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

import httpx

from fleet_core.auth import ALL_TEAMS, Role, TokenAuthority
from fleet_core.log import get_logger
from fleet_core.serving import RoutesSnapshot
from fleet_gateway.metrics import GatewayMetrics
from fleet_gateway.routing import RouteBook

log = get_logger(__name__)

SERVICE_SUBJECT = "service:gateway"


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
    ) -> None:
        self._book = book
        self._tokens = tokens
        self._metrics = metrics
        self._url = deployer_url.rstrip("/") + "/v1/routes"
        self._resync_s = resync_s
        self._min_interval_s = refresh_min_interval_s
        self._max_backoff_s = max_backoff_s
        self._client = httpx.AsyncClient(timeout=timeout_s)
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Task[bool] | None = None
        self._last_refresh = -float("inf")
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

    async def refresh(self, reason: str = "") -> bool:
        """A rate-limited, coalesced re-fetch; True when a snapshot was applied just now."""
        if self._inflight is not None and not self._inflight.done():
            return await asyncio.shield(self._inflight)
        now = time.monotonic()
        if now - self._last_refresh < self._min_interval_s:
            return False
        self._last_refresh = now
        log.info("re-fetching routes on demand", reason=reason)
        self._inflight = asyncio.create_task(self.sync())
        return await asyncio.shield(self._inflight)

    async def refresh_model(self, model: str, attempts: int = 5) -> None:
        """A route update named versions this gateway cannot serve yet: fetch until it can.

        Unlike a request's on-demand refresh, this one must not be dropped by the rate limit, and a
        fetch that was already in flight may predate the update, so it retries a few times."""
        for _ in range(attempts):
            await self.refresh(f"rollout.updated names unknown versions of {model}")
            if self._book.knows(model) and not self._book.missing_versions(model):
                return
            # Rate-limited or stale: try again as soon as the interval allows.
            remaining = self._min_interval_s - (time.monotonic() - self._last_refresh)
            await asyncio.sleep(max(0.05, remaining))
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
        for task in (self._task, self._inflight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._client.aclose()
