"""Revoked tokens, known to every service within a bounded delay.

Tokens are verified locally (no call per request), so a revoked token must reach every
verifier: each service keeps the registry's revocation list in its ``TokenAuthority`` and
refreshes it every ``revocation_refresh_s``. A refresh that fails keeps the last list (a registry
outage never un-revokes a token, nor stops a service) and is retried at the next interval; the
gauge ``fleet_token_revocations_age_seconds`` says how stale the list is, so an alert can tell a
follower that stopped hearing from the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
from prometheus_client import CollectorRegistry, Gauge

from fleet_core.auth import ALL_TEAMS, Role, TokenAuthority
from fleet_core.log import get_logger

log = get_logger(__name__)

RevokedIds = Callable[[], Awaitable[set[str]]]
REVOKED_PATH = "/v1/tokens/revoked"
SERVICE_SUBJECT = "service:revocation-follower"


def registry_source(registry_url: str, tokens: TokenAuthority, *, timeout_s: float = 5.0) -> RevokedIds:
    """Fetches ``GET /v1/tokens/revoked`` from the registry with a short-lived viewer token."""

    async def fetch() -> set[str]:
        token, _, _ = tokens.issue(SERVICE_SUBJECT, Role.VIEWER, [ALL_TEAMS], ttl=timedelta(minutes=5))
        async with httpx.AsyncClient(base_url=registry_url, timeout=timeout_s) as client:
            r = await client.get(REVOKED_PATH, headers={"Authorization": f"Bearer {token}"})
            r.raise_for_status()
            return {str(item["token_id"]) for item in r.json()["items"]}

    return fetch


class RevocationFollower:
    """Keeps ``tokens``' revocation list fresh from ``source``, every ``interval_s``."""

    def __init__(
        self,
        tokens: TokenAuthority,
        source: RevokedIds,
        interval_s: float,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._tokens = tokens
        self._source = source
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._refreshed_at: float | None = None
        self._failing = False
        self.age = Gauge(
            "fleet_token_revocations_age_seconds",
            "Seconds since the revocation list was last refreshed from the registry",
            registry=registry,
        )
        self.age.set_function(self._age)

    def _age(self) -> float:
        return time.monotonic() - self._refreshed_at if self._refreshed_at is not None else float("inf")

    async def refresh(self) -> bool:
        """One refresh; False (and the last list kept) when the source fails."""
        try:
            revoked = await self._source()
        except Exception as exc:  # any failure of the source: keep what we have, say so once
            if not self._failing:
                log.warning("revocation list refresh failed; keeping the last list", error=repr(exc))
            self._failing = True
            return False
        if self._failing:
            log.info("revocation list refreshed again", revoked=len(revoked))
        self._failing = False
        self._tokens.set_revoked(revoked)
        self._refreshed_at = time.monotonic()
        return True

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="revocation-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
