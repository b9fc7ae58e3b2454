"""Cheap per-request access checks: a short cache of verified tokens and per-token token buckets.

Tokens are HS256 JWTs verified locally (``fleet_core.auth``); verifying costs tens of
microseconds, so a verified token is remembered for ``token_cache_s`` (never past its own
expiry). Each token (its ``jti``, else its subject) gets a bucket of ``burst`` requests refilled
at ``rps``; an empty bucket answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import jwt

from fleet_core.auth import Principal, TokenAuthority
from fleet_core.errors import RateLimited, Unauthorized

MAX_CACHED_TOKENS = 50_000
MAX_BUCKETS = 100_000


class TokenCache:
    """Verified principals by raw token, for a short while."""

    def __init__(
        self, authority: TokenAuthority, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._authority = authority
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[Principal, float]] = {}

    def principal(self, authorization: str | None) -> Principal:
        """The caller named by an ``Authorization`` header value (401 when absent or invalid)."""
        if not authorization:
            raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
        now = self._clock()
        hit = self._cache.get(token)
        if hit is not None and hit[1] > now:
            # A token revoked since it was cached is refused at once (the list is refreshed from
            # the registry every FLEET_REVOCATION_REFRESH_S).
            if self._authority.is_revoked(hit[0].token_id):
                del self._cache[token]
                raise Unauthorized("the bearer token has been revoked")
            return hit[0]
        principal = self._authority.verify(token)
        if self._ttl_s > 0:
            until = now + self._ttl_s
            exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
            if exp is not None:
                until = min(until, now + (float(exp) - time.time()))
            if len(self._cache) >= MAX_CACHED_TOKENS:
                self._cache.clear()
            self._cache[token] = (principal, until)
        return principal


class RateLimiter:
    """Token buckets keyed by caller."""

    def __init__(self, rps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rps = rps
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}

    def take(self, key: str) -> None:
        """Spend one request from ``key``'s bucket, or raise ``RateLimited`` with ``Retry-After``."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._prune(now)
            self._buckets[key] = [self._burst - 1, now]
            return
        tokens = min(self._burst, bucket[0] + (now - bucket[1]) * self._rps)
        bucket[1] = now
        if tokens >= 1:
            bucket[0] = tokens - 1
            return
        bucket[0] = tokens
        retry = max(1, math.ceil((1 - tokens) / self._rps))
        raise RateLimited(
            f"rate limit of {self._rps:g} requests/s (burst {int(self._burst)}) exceeded; retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )

    def _prune(self, now: float) -> None:
        # Buckets that have refilled completely carry no state worth keeping.
        full_after = self._burst / self._rps
        self._buckets = {k: b for k, b in self._buckets.items() if now - b[1] < full_after}
        if len(self._buckets) >= MAX_BUCKETS:
            self._buckets.clear()


class Gatekeeper:
    """Authenticate, then rate-limit, in one call per request."""

    def __init__(self, tokens: TokenCache, limiter: RateLimiter) -> None:
        self.tokens = tokens
        self.limiter = limiter

    def admit(self, authorization: str | None) -> Principal:
        principal = self.tokens.principal(authorization)
        self.limiter.take(principal.token_id or principal.subject)
        return principal
