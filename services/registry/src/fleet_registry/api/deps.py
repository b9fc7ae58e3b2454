"""Dependencies of the registry API, declared once as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from fleet_core.artifacts import ArtifactStore
from fleet_core.auth import CurrentPrincipal  # noqa: F401  (re-exported for routers)
from fleet_registry.delivery import Delivery
from fleet_registry.settings import RegistrySettings
from fleet_registry.store import RegistryStore


def _store(request: Request) -> RegistryStore:
    return request.app.state.store  # type: ignore[no-any-return]


def _artifacts(request: Request) -> ArtifactStore:
    return request.app.state.artifacts  # type: ignore[no-any-return]


def _settings(request: Request) -> RegistrySettings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _delivery(request: Request) -> Delivery:
    return request.app.state.delivery  # type: ignore[no-any-return]


DeliveryDep = Annotated[Delivery, Depends(_delivery)]
StoreDep = Annotated[RegistryStore, Depends(_store)]
ArtifactsDep = Annotated[ArtifactStore, Depends(_artifacts)]
SettingsDep = Annotated[RegistrySettings, Depends(_settings)]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=10**9, description="Items to skip")]
