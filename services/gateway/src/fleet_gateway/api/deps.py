"""Dependencies of the gateway API, declared once as ``Annotated`` aliases.

``CallerDep`` authenticates (cached) and spends one request from the caller's rate-limit bucket.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fleet_core.auth import Principal
from fleet_gateway.access import Gatekeeper
from fleet_gateway.dataplane import DataPlane
from fleet_gateway.events import FeedbackPublisher


async def _plane(request: Request) -> DataPlane:
    return request.app.state.dataplane  # type: ignore[no-any-return]


async def _caller(request: Request) -> Principal:
    gatekeeper: Gatekeeper = request.app.state.gatekeeper
    return gatekeeper.admit(request.headers.get("authorization"))


async def _feedback(request: Request) -> FeedbackPublisher:
    return request.app.state.feedback  # type: ignore[no-any-return]


# The registry's rule for model names: a name outside it was never registered, so no lookup is needed.
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"

PlaneDep = Annotated[DataPlane, Depends(_plane)]
CallerDep = Annotated[Principal, Depends(_caller)]
FeedbackDep = Annotated[FeedbackPublisher, Depends(_feedback)]
