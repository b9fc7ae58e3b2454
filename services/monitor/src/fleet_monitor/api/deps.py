"""Dependencies of the monitor API, declared once as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from fleet_core.auth import BearerCredentials, CurrentPrincipal, Principal, Role, get_principal
from fleet_monitor.engine import MonitorEngine
from fleet_monitor.lake import InferenceLake
from fleet_monitor.store import MonitorStore

__all__ = ["CurrentPrincipal", "EngineDep", "LakeDep", "Limit", "Offset", "Reader", "StoreDep"]


def _engine(request: Request) -> MonitorEngine:
    return request.app.state.engine  # type: ignore[no-any-return]


def _store(request: Request) -> MonitorStore:
    return request.app.state.engine.store  # type: ignore[no-any-return]


def _lake(request: Request) -> InferenceLake | None:
    return request.app.state.engine.lake  # type: ignore[no-any-return]


def _reader(request: Request, credentials: BearerCredentials) -> Principal | None:
    """Anyone may read when ``anonymous_read`` is on (the default); otherwise a viewer token."""
    if request.app.state.settings.anonymous_read and credentials is None:
        return None
    principal = get_principal(request, credentials)
    principal.require_role(Role.VIEWER)
    return principal


EngineDep = Annotated[MonitorEngine, Depends(_engine)]
StoreDep = Annotated[MonitorStore, Depends(_store)]
LakeDep = Annotated[InferenceLake | None, Depends(_lake)]
Reader = Annotated[Principal | None, Depends(_reader)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size")]
Offset = Annotated[int, Query(ge=0, description="Items to skip")]
