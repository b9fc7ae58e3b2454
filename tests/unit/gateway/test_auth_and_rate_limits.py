"""Who may infer, and how often: bearer tokens scoped to teams, per-token buckets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fleet_core.auth import Role, TokenAuthority
from fleet_core.errors import Unauthorized
from fleet_core.events import RouteArm
from fleet_gateway.access import RateLimiter, TokenCache
from support.gateway import SECRET, GatewayHarness, route, running_gateway, snapshot

ROW = {"age": 42, "income": 5100.5, "email": "ada@example.com"}


@pytest.fixture
async def gw() -> AsyncIterator[GatewayHarness]:
    routes = snapshot(
        route("churn", [RouteArm(version=1, weight=100)], team="risk"),
        route("fraud", [RouteArm(version=4, weight=100)], team="payments"),
    )
    async with running_gateway(routes, rate_limit_rps=1, rate_limit_burst=3) as h:
        yield h


async def test_no_token_or_a_bad_token_is_401(gw: GatewayHarness) -> None:
    r = await gw.client.post("/v2/models/churn/infer", json={"inputs": ROW})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = await gw.client.post(
        "/v2/models/churn/infer", json={"inputs": ROW}, headers={"Authorization": "Bearer not-a-jwt"}
    )
    assert r.status_code == 401
    forged, _, _ = TokenAuthority("another-secret-that-is-long-enough-0123456789").issue(
        "eve", Role.ADMIN, ["*"]
    )
    r = await gw.client.post(
        "/v2/models/churn/infer", json={"inputs": ROW}, headers={"Authorization": f"Bearer {forged}"}
    )
    assert r.status_code == 401


async def test_any_role_of_the_models_team_may_infer_but_not_another_team(gw: GatewayHarness) -> None:
    r = await gw.client.post(
        "/v2/models/churn/infer", json={"inputs": ROW}, headers=gw.auth(Role.VIEWER, ["risk"])
    )
    assert r.status_code == 200
    r = await gw.client.post(
        "/v2/models/fraud/infer", json={"inputs": ROW}, headers=gw.auth(Role.VIEWER, ["risk"])
    )
    assert r.status_code == 403 and r.json()["type"].endswith("/forbidden")
    r = await gw.client.get("/v2/models/fraud", headers=gw.auth(Role.SCIENTIST, ["risk"]))
    assert r.status_code == 403
    r = await gw.client.post("/v2/models/fraud/infer", json={"inputs": ROW}, headers=gw.auth(Role.ADMIN, []))
    assert r.status_code == 200


async def test_a_token_over_its_rate_is_429_with_retry_after(gw: GatewayHarness) -> None:
    headers = gw.auth(subject="burst-user")
    statuses = [
        (await gw.client.post("/v2/models/churn/infer", json={"inputs": ROW}, headers=headers)).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 200]
    r = await gw.client.post("/v2/models/churn/infer", json={"inputs": ROW}, headers=headers)
    assert r.status_code == 429
    assert r.json()["type"].endswith("/rate-limited")
    assert int(r.headers["retry-after"]) >= 1
    # Another token has its own bucket.
    other = await gw.client.post(
        "/v2/models/churn/infer", json={"inputs": ROW}, headers=gw.auth(subject="calm")
    )
    assert other.status_code == 200


def test_bucket_refills_at_the_configured_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rps=2, burst=2, clock=lambda: now[0])
    limiter.take("k")
    limiter.take("k")
    with pytest.raises(Exception) as excinfo:
        limiter.take("k")
    assert excinfo.value.headers == {"Retry-After": "1"}  # type: ignore[attr-defined]
    now[0] += 0.5
    limiter.take("k")


def test_verified_tokens_are_cached_but_not_past_their_ttl() -> None:
    authority = TokenAuthority(SECRET)
    calls = []
    real_verify = authority.verify

    def counting_verify(token: str):  # type: ignore[no-untyped-def]
        calls.append(token)
        return real_verify(token)

    authority.verify = counting_verify  # type: ignore[method-assign]
    now = [100.0]
    cache = TokenCache(authority, ttl_s=10, clock=lambda: now[0])
    token, _, _ = authority.issue("ann", Role.VIEWER, ["risk"])
    header = f"Bearer {token}"
    assert cache.principal(header).subject == "ann"
    assert cache.principal(header).subject == "ann"
    assert len(calls) == 1
    now[0] += 11
    cache.principal(header)
    assert len(calls) == 2


async def test_a_cached_token_is_refused_as_soon_as_it_is_revoked() -> None:
    authority = TokenAuthority(SECRET)
    cache = TokenCache(authority, ttl_s=3600)
    token, token_id, _ = authority.issue("ann", Role.VIEWER, ["risk"])
    header = f"Bearer {token}"
    assert cache.principal(header).subject == "ann"  # verified and cached for an hour
    authority.set_revoked({token_id})  # what the revocation follower does on its next refresh
    with pytest.raises(Unauthorized, match="revoked"):
        cache.principal(header)
    other, _, _ = authority.issue("bob", Role.VIEWER, ["risk"])
    assert cache.principal(f"Bearer {other}").subject == "bob"
