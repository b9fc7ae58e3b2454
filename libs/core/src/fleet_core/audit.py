"""The audit trail of every service, written where the request is answered.

``AuditMiddleware`` (installed by ``build_app``) sees every response. It records every write
(POST, PUT, PATCH, DELETE) with its outcome, and every refused attempt (401 or 403) on any
route, reads included, so probing is visible. The entry is handed to the service's
``app.state.audit_sink``: the deployer, monitor and retrainer stage it in their outbox as
``audit.recorded``; the registry, which keeps the platform's audit log, consumes those events and
writes its own refusals directly. An audit failure is logged and never fails the request.

A route whose path holds something that must not be logged (a raw data subject id) calls
``annotate_audit`` with the resource to record instead, and may add detail (what it did).

Why at the HTTP edge rather than inside each use case: one place covers every route of every
service, the day a route is added, with the same vocabulary (``PUT /v1/routes/{model}``). The
registry still audits its own writes inside their transaction, with domain action names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet_core.auth import TokenAuthority
from fleet_core.errors import FleetError
from fleet_core.events import AuditRecorded
from fleet_core.log import REQUEST_ID_HEADER, current_request_id, get_logger

log = get_logger(__name__)

AuditSink = Callable[[AuditRecorded], Awaitable[None]]
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUDIT_SCOPE_KEY = "fleet.audit"


def annotate_audit(
    scope: Scope, *, resource: str | None = None, detail: dict[str, Any] | None = None
) -> None:
    """Let the route shape its own audit entry: ``resource`` replaces the request path (which then
    is never recorded), ``detail`` is merged into the entry's detail. Safe to call more than once."""
    note = scope.setdefault(AUDIT_SCOPE_KEY, {})
    if resource is not None:
        note["resource"] = resource
    if detail:
        note.setdefault("detail", {}).update(detail)


def outcome_of(status: int) -> str:
    if status in (401, 403):
        return "denied"
    if status >= 500:
        return "error"
    if status >= 400:
        return "rejected"
    return "ok"


class AuditMiddleware:
    """Hands an ``AuditRecorded`` to ``app.state.audit_sink`` for each audited request.

    ``audit_writes=False`` (the gateway, whose POSTs are inference traffic, logged as
    ``inference.logged``) records refusals only; ``skip_ok`` leaves successful writes to the
    service's own transactional audit (the registry)."""

    def __init__(
        self, app: ASGIApp, *, service: str, audit_writes: bool = True, skip_ok: bool = False
    ) -> None:
        self.app = app
        self.service = service
        self.audit_writes = audit_writes
        self.skip_ok = skip_ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, request_id = 500, None

        async def capture(message: Message) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", []):
                    if name.lower() == REQUEST_ID_HEADER.lower().encode():
                        request_id = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            await self._maybe_record(scope, status, request_id)

    async def _maybe_record(self, scope: Scope, status: int, request_id: str | None) -> None:
        method = scope.get("method", "GET")
        outcome = outcome_of(status)
        write = method in WRITES and self.audit_writes
        if not (outcome == "denied" or (write and not (self.skip_ok and outcome == "ok"))):
            return
        app = scope.get("app")
        sink: AuditSink | None = getattr(getattr(app, "state", None), "audit_sink", None)
        if sink is None:
            return
        try:
            await sink(self._entry(scope, method, status, outcome, app, request_id))
        except Exception as exc:  # the audit must never fail or stall the answer
            log.warning("audit entry not recorded", error=repr(exc), path=scope.get("path"))

    def _entry(
        self, scope: Scope, method: str, status: int, outcome: str, app: Any, request_id: str | None
    ) -> AuditRecorded:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        actor, role = caller_of(headers.get("authorization"), getattr(app.state, "tokens", None))
        route = scope.get("route")
        template = getattr(route, "path", None) or scope.get("path", "")
        note = scope.get(AUDIT_SCOPE_KEY) or {}
        return AuditRecorded(
            service=self.service,
            actor=actor,
            role=role,
            action=f"{method} {template}",
            resource=(note.get("resource") or scope.get("path", ""))[:400],
            outcome=outcome,  # type: ignore[arg-type]
            status=status,
            at=datetime.now(UTC),
            request_id=request_id or current_request_id() or headers.get(REQUEST_ID_HEADER.lower()),
            detail=note.get("detail", {}),
        )


def caller_of(authorization: str | None, tokens: TokenAuthority | None) -> tuple[str, str | None]:
    """Who sent the request, as far as its token says (verified: an invalid token names nobody)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token or tokens is None:
        return "anonymous", None
    try:
        principal = tokens.verify(token)
    except FleetError:
        return "invalid-token", None
    return principal.subject, str(principal.role)
