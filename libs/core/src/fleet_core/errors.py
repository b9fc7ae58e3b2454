"""Domain errors and their RFC 9457 problem+json rendering, in one place.

Logic raises ``NotFound``, ``Conflict``, ``Forbidden``... ; ``install_problem_handlers``
maps each to its status and a stable ``type`` URI. Request validation errors
name the offending field.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleet_core.log import current_request_id, get_logger

PROBLEM_BASE = "https://modelfleet.dev/problems"
PROBLEM_JSON = "application/problem+json"
OIP_PREFIX = "/v2"
"""Paths of the Open Inference Protocol, whose problems also carry its ``error`` member."""

log = get_logger(__name__)


class FleetError(Exception):
    """Root of every domain error; carries its HTTP status and problem type."""

    status: int = 500
    kind: str = "internal-error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.errors = errors
        self.headers = headers


class InvalidInput(FleetError):
    status, kind, title = 422, "invalid-input", "Invalid input"


class MalformedRequest(FleetError):
    status, kind, title = 400, "malformed-request", "Malformed request"


class Unauthorized(FleetError):
    status, kind, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class Forbidden(FleetError):
    status, kind, title = 403, "forbidden", "Forbidden"


class NotFound(FleetError):
    status, kind, title = 404, "not-found", "Not found"


class Conflict(FleetError):
    status, kind, title = 409, "conflict", "Conflict"


class PayloadTooLarge(FleetError):
    status, kind, title = 413, "payload-too-large", "Payload too large"


class RateLimited(FleetError):
    status, kind, title = 429, "rate-limited", "Too many requests"


class Unavailable(FleetError):
    status, kind, title = 503, "unavailable", "Service unavailable"


def problem(
    *,
    status: int,
    kind: str,
    title: str,
    detail: str,
    instance: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"{PROBLEM_BASE}/{kind}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    rid = current_request_id()
    if rid:
        body["request_id"] = rid
    body.update({k: v for k, v in (extra or {}).items() if v is not None})
    if instance == OIP_PREFIX or instance.startswith(OIP_PREFIX + "/"):
        # The Open Inference Protocol's error body is {"error": "<message>"}: its clients
        # (tritonclient, kserve) read that member only, so /v2 answers carry it as well.
        body["error"] = detail
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "form"}:
        parts = parts[1:] or parts
    return ".".join(parts)


def install_problem_handlers(app: FastAPI) -> None:
    """Render every error the app can raise as problem+json."""

    @app.exception_handler(FleetError)
    async def _domain(request: Request, exc: FleetError) -> JSONResponse:
        return problem_for(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field_path(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type")}
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in errors):
            return problem(
                status=400,
                kind="malformed-json",
                title="Malformed JSON",
                detail="The request body is not valid JSON",
                instance=request.url.path,
                extra={"errors": errors},
            )
        first = errors[0] if errors else {"field": "", "message": "invalid"}
        return problem(
            status=422,
            kind="validation-error",
            title="Request validation failed",
            detail=f"{first['field']}: {first['message']}",
            instance=request.url.path,
            extra={"field": first["field"], "errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_for(exc, request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return problem_for(exc, request.url.path)


def problem_for(exc: BaseException, instance: str) -> JSONResponse:
    """The problem+json answer to an error raised while handling a request at ``instance``: what
    the app's exception handlers send, and what a route served outside FastAPI's routing (the
    gateway's inference fast path) sends too."""
    if isinstance(exc, FleetError):
        return problem(
            status=exc.status,
            kind=exc.kind,
            title=exc.title,
            detail=exc.detail,
            instance=instance,
            extra={"field": exc.field, "errors": exc.errors},
            headers=exc.headers,
        )
    if isinstance(exc, StarletteHTTPException):
        kind = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(
            exc.status_code, "http-error"
        )
        return problem(
            status=exc.status_code,
            kind=kind,
            title=str(exc.detail),
            detail=str(exc.detail),
            instance=instance,
            headers=getattr(exc, "headers", None),
        )
    log.exception("unhandled error", path=instance, exc_info=exc)
    return problem(
        status=500,
        kind="internal-error",
        title="Internal error",
        detail="An unexpected error occurred; see the service log for the request id",
        instance=instance,
    )
