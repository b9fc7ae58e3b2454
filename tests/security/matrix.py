"""The access matrix: every route of a service, taken from the app itself, against tokens that
must be refused and a token that must be let through.

A service's test declares, for each route, the least role that may call it and its scope:

- ``team``: acts on one team's resource. No token is 401; the right role of another team is 403;
  the role just below on the right team is 403; the right role on the right team gets through
  (any status but 401 or 403).
- ``listing``: returns many teams' resources filtered to the caller's. No token is 401; a caller of
  another team gets through but sees none of the team's resources (``markers`` absent).
- ``admin``: admins only; a deployer of every team is 403.
- ``authenticated``: platform metadata that names no team's resource (the revocation list); no
  token is 401, any valid token gets through.
- ``public``: health and the like; no token gets through.

The routes come from ``app.routes`` (OpenAPI or not), so a route added without a row in its
service's table fails the test the day it is added.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from fleet_core.auth import Role, TokenAuthority

Scope = Literal["team", "listing", "admin", "authenticated", "public"]
RequestKwargs = dict[str, Any]

TEAM = "gx"
OTHER_TEAM = "ox"
ROLES = list(Role)


@dataclass(frozen=True)
class Access:
    """Who may call one route, and how to call it."""

    scope: Scope
    role: Role = Role.VIEWER
    path: str | None = None
    """The concrete path to call (the template's parameters filled in); default: the template."""
    request: Callable[[], RequestKwargs] | None = None
    """httpx keyword arguments (json=, data=, files=, params=) for each call; called afresh."""
    endless: bool = False
    """An answer that never ends once let through (server-sent events): only the refusal without a
    token is checked here; the service's own tests cover the rest over a real server."""


def team(role: Role, path: str | None = None, request: Callable[[], RequestKwargs] | None = None) -> Access:
    return Access("team", role, path, request)


def listing(path: str | None = None, request: Callable[[], RequestKwargs] | None = None) -> Access:
    return Access("listing", Role.VIEWER, path, request)


def authenticated(path: str | None = None) -> Access:
    return Access("authenticated", Role.VIEWER, path)


def admin(path: str | None = None, request: Callable[[], RequestKwargs] | None = None) -> Access:
    return Access("admin", Role.ADMIN, path, request)


PUBLIC = Access("public")

SERVICE_ROUTES: dict[tuple[str, str], Access] = {
    (method, path): PUBLIC
    for method, path in [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),  # scraped by Prometheus; never published by the Ingress (NetworkPolicy)
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"),
    ]
}
"""What every service serves to anyone: health, metrics and its API's description."""


def routes_of(app: Any) -> set[tuple[str, str]]:
    """Every (METHOD, path template) the app serves, schema or not; static mounts by their path."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, APIRoute | Route):
            found.update((m, route.path) for m in route.methods or () if m not in {"HEAD", "OPTIONS"})
        elif isinstance(route, Mount):
            found.add(("GET", route.path + "/{path}"))
        elif hasattr(route, "effective_route_contexts"):
            # FastAPI >= 0.165 keeps an included router as one route; its contexts are the routes.
            for context in route.effective_route_contexts():
                found.update((m, context.path) for m in context.methods or () if m not in {"HEAD", "OPTIONS"})
        else:
            raise AssertionError(f"a route of unknown kind: {route!r}; teach routes_of() to read it")
    return found


@dataclass
class MatrixRun:
    """One service's matrix, run against its app through ``client``."""

    client: httpx.AsyncClient
    tokens: TokenAuthority
    table: dict[tuple[str, str], Access]
    markers: Sequence[str]
    """Strings that appear in a response only if it shows the team's resources (names)."""
    failures: list[str] = field(default_factory=list)

    def token(self, role: Role, teams: list[str]) -> dict[str, str]:
        token, _, _ = self.tokens.issue(f"matrix-{role}-{'-'.join(teams)}", role, teams)
        return {"Authorization": f"Bearer {token}"}

    async def call(
        self, method: str, template: str, access: Access, headers: dict[str, str]
    ) -> httpx.Response:
        kwargs = access.request() if access.request else {}
        return await self.client.request(method, access.path or template, headers=headers, **kwargs)

    def expect(self, ok: bool, method: str, template: str, case: str, r: httpx.Response) -> None:
        if not ok:
            self.failures.append(f"{method} {template} [{case}] -> {r.status_code} {r.text[:200]}")

    async def run(self, app: Any) -> None:
        served = routes_of(app)
        for missing in sorted(served - set(self.table)):
            self.failures.append(f"{missing[0]} {missing[1]}: no row in the access table; add one")
        for stale in sorted(set(self.table) - served):
            self.failures.append(f"{stale[0]} {stale[1]}: in the access table but not served")
        # Refusals first: none of them may change anything, so the allowed calls that follow
        # (some destructive, in table order) all see the fixture's resources.
        for (method, template), access in self.table.items():
            await self._refusals(method, template, access)
        for (method, template), access in self.table.items():
            await self._allowed(method, template, access)

    async def _refusals(self, method: str, template: str, access: Access) -> None:
        if access.scope == "public":
            return
        r = await self.call(method, template, access, {})
        self.expect(r.status_code == 401, method, template, "no token", r)
        if access.endless:
            return
        if access.scope == "admin":
            r = await self.call(method, template, access, self.token(Role.DEPLOYER, ["*"]))
            self.expect(r.status_code == 403, method, template, "deployer of every team", r)
            return
        if access.scope == "team":
            r = await self.call(method, template, access, self.token(access.role, [OTHER_TEAM]))
            self.expect(r.status_code == 403, method, template, f"{access.role} of another team", r)
        if access.scope == "listing":
            r = await self.call(method, template, access, self.token(Role.ADMIN, ["*"]))
            shown = r.status_code == 200 and any(m in r.text for m in self.markers)
            self.expect(shown, method, template, "admin sees the team's resources in the listing", r)
            r = await self.call(method, template, access, self.token(access.role, [OTHER_TEAM]))
            hidden = r.status_code not in (401, 403) and not any(m in r.text for m in self.markers)
            self.expect(hidden, method, template, "another team's listing hides the team's resources", r)
        below = ROLES.index(access.role) - 1
        if below >= 0 and access.scope == "team":
            r = await self.call(method, template, access, self.token(ROLES[below], [TEAM]))
            self.expect(r.status_code == 403, method, template, f"{ROLES[below]} of the team", r)

    async def _allowed(self, method: str, template: str, access: Access) -> None:
        if access.endless:
            return
        teams = {"admin": ["*"], "authenticated": [OTHER_TEAM]}.get(access.scope, [TEAM])
        headers = {} if access.scope == "public" else self.token(access.role, teams)
        r = await self.call(method, template, access, headers)
        self.expect(r.status_code not in (401, 403), method, template, f"{access.role} of the team", r)
        self.expect(r.status_code < 500, method, template, f"{access.role} of the team: no 5xx", r)

    def report(self) -> str:
        return "\n".join(self.failures)
