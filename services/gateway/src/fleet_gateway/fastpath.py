"""The inference routes served beside FastAPI's router, not through it.

Profiled under load, FastAPI's and Starlette's layers (route matching, the dependency machinery,
the exit-stack and exception middlewares, the endpoint wrapper) took about a quarter of the
gateway's CPU per request, more than the request's own work. ``InferFastPath`` sits outermost,
recognises ``POST /v2/models/{name}[/versions/{v}]/infer`` by hand, and runs the same handler
(``api.inference._infer``) inside the same plain-ASGI layers every route has (request id, audit of
refusals, body-size limit, HTTP metrics, in that order), rendering errors with the same
problem+json function the app's exception handlers use. Anything else, and any infer path whose
name or version does not pass the route's own constraints, goes to FastAPI unchanged, so odd
requests get the answers they always got.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from fleet_core.audit import AuditMiddleware
from fleet_core.errors import problem_for
from fleet_core.metrics import HttpMetricsMiddleware
from fleet_core.service import BodySizeLimitMiddleware, DecodedBodyMiddleware, RequestIdMiddleware
from fleet_gateway.api.deps import MODEL_NAME_PATTERN
from fleet_gateway.api.inference import _infer

_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([0-9]{1,10}))?/infer")
_NAME = re.compile(MODEL_NAME_PATTERN)
MAX_VERSION = 2**31 - 1


class _Template:
    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class InferFastPath:
    """ASGI middleware: the two infer routes by hand, the rest to ``app``."""

    def __init__(self, app: ASGIApp, *, fleet_app: Any, max_body_bytes: int | None) -> None:
        self.app = app
        self.fleet_app = fleet_app
        # Metrics and audit entries are labelled by ``scope["route"].path``, the route template.
        self._route = _Template("/v2/models/{name}/infer")
        self._version_route = _Template("/v2/models/{name}/versions/{version}/infer")
        inner: ASGIApp = self._endpoint
        metrics = fleet_app.state.metrics
        inner = HttpMetricsMiddleware(inner, metrics)
        if max_body_bytes is not None:
            inner = BodySizeLimitMiddleware(DecodedBodyMiddleware(inner, max_body_bytes), max_body_bytes)
        inner = AuditMiddleware(inner, service="gateway", audit_writes=False)
        self._chain: ASGIApp = RequestIdMiddleware(inner)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _INFER.fullmatch(scope["path"])
            if match is not None:
                name, version = match.group(1), match.group(2)
                if _NAME.fullmatch(name) and (version is None or 1 <= int(version) <= MAX_VERSION):
                    scope["route"] = self._route if version is None else self._version_route
                    scope["path_params"] = (
                        {"name": name} if version is None else {"name": name, "version": version}
                    )
                    await self._chain(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope["path_params"]
        version = params.get("version")
        request = Request(scope, receive)
        try:
            response = await _infer(request, params["name"], None if version is None else int(version))
        except Exception as exc:
            response = problem_for(exc, scope["path"])
        await response(scope, receive, send)
