"""Dependencies of the monitor API, declared once as ``Annotated`` aliases.

Who may read what: a model's data (its detail, thresholds, alerts, lake rows, its row in the
overview) is readable by a ``viewer`` (or higher) of the model's team; listings are filtered to the
caller's teams; a model whose team the monitor does not know is visible only to principals who see
every team (admins, ``*`` members). Anonymous reads exist only in the embedded stack
(``FLEET_ANONYMOUS_READ``, on by default there and refused in production) and see everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Path, Query, Request

from fleet_core.auth import BearerCredentials, CurrentPrincipal, Principal, Role, get_principal
from fleet_monitor.engine import MonitorEngine
from fleet_monitor.lake import InferenceLake
from fleet_monitor.store import MonitorStore
from fleet_monitor.views import OverviewQuery, OverviewSort, OverviewState

__all__ = [
    "MAX_INT",
    "AlertId",
    "CurrentPrincipal",
    "EngineDep",
    "LakeDep",
    "Limit",
    "Offset",
    "OverviewParams",
    "ReadAccess",
    "Reader",
    "StoreDep",
]

MAX_INT = 2**31 - 1
"""Largest id, offset or count any route accepts: the ids are 32-bit integers in PostgreSQL, and
anything larger would overflow the database driver (a 500) instead of being a 422."""


@dataclass(frozen=True, slots=True)
class ReadAccess:
    """What one caller may read. ``principal`` is None for an anonymous reader (embedded stack only),
    who sees every model."""

    principal: Principal | None

    def sees(self, team: str | None) -> bool:
        """True if this caller may read a model of ``team`` (None: no known team, fails closed)."""
        if self.principal is None:
            return True
        if team is None:
            return self.principal.sees_all_teams
        return self.principal.in_team(team)

    @property
    def sees_all(self) -> bool:
        return self.principal is None or self.principal.sees_all_teams

    def require(self, team: str | None) -> None:
        """Forbidden (403 naming ``team``) unless this caller may read a model of ``team``."""
        if self.principal is not None:
            self.principal.require(Role.VIEWER, team)


def _engine(request: Request) -> MonitorEngine:
    return request.app.state.engine  # type: ignore[no-any-return]


def _store(request: Request) -> MonitorStore:
    return request.app.state.engine.store  # type: ignore[no-any-return]


def _lake(request: Request) -> InferenceLake | None:
    return request.app.state.engine.lake  # type: ignore[no-any-return]


def _reader(request: Request, credentials: BearerCredentials) -> ReadAccess:
    """Anonymous only when ``anonymous_read`` is on (embedded) and no token is sent; a token that is
    sent is always verified, and its teams limit what it reads."""
    if request.app.state.settings.anonymous_read and credentials is None:
        return ReadAccess(None)
    principal = get_principal(request, credentials)
    principal.require_role(Role.VIEWER)
    return ReadAccess(principal)


EngineDep = Annotated[MonitorEngine, Depends(_engine)]
StoreDep = Annotated[MonitorStore, Depends(_store)]
LakeDep = Annotated[InferenceLake | None, Depends(_lake)]
Reader = Annotated[ReadAccess, Depends(_reader)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=MAX_INT, description="Items to skip")]
AlertId = Annotated[int, Path(ge=1, le=MAX_INT, description="The alert's id")]


def _overview_query(
    q: Annotated[
        str | None, Query(max_length=100, description="Only models whose name contains this (any case)")
    ] = None,
    model: Annotated[
        str | None, Query(max_length=100, description="Only the model of this exact name")
    ] = None,
    team: Annotated[str | None, Query(max_length=100, description="Only models of this team")] = None,
    state: Annotated[OverviewState | None, Query(description="Only models in this state")] = None,
    alerting: Annotated[
        bool | None, Query(description="true: only models with a firing alert; false: only without")
    ] = None,
    drifting: Annotated[
        bool | None, Query(description="true: only models with an open drift episode; false: only without")
    ] = None,
    rollout: Annotated[
        bool | None,
        Query(description="true: only models with a rollout in progress (pending, progressing, paused)"),
    ] = None,
    sort: Annotated[
        OverviewSort,
        Query(description="name, rps (traffic), error_rate, latency_p95, drift (episodes, then PSI), alerts"),
    ] = "name",
    order: Annotated[
        Literal["asc", "desc"] | None,
        Query(description="Default: ascending for name, descending (busiest, worst first) otherwise"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size")] = 100,
    offset: Offset = 0,
) -> OverviewQuery:
    return OverviewQuery(
        q=q or None,
        model=model,
        team=team,
        state=state,
        alerting=alerting,
        drifting=drifting,
        rollout=rollout,
        sort=sort,
        order=order,
        limit=limit,
        offset=offset,
    )


OverviewParams = Annotated[OverviewQuery, Depends(_overview_query)]
