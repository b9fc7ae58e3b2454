"""What every service's FastAPI app shares: problem+json errors, request ids, metrics,
bearer-token verification and health endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet_core.audit import AuditMiddleware
from fleet_core.db import Database
from fleet_core.errors import install_problem_handlers, problem
from fleet_core.log import REQUEST_ID_HEADER, bind_request_id, clear_request_id, get_logger
from fleet_core.metrics import ServiceMetrics
from fleet_core.outbox import OutboxRelay
from fleet_core.revocation import RevocationFollower, registry_source
from fleet_core.settings import FleetSettings, ServiceSettings

ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]
log = get_logger(__name__)


@contextmanager
def keep_signal_handlers(*signals: signal.Signals) -> Iterator[None]:
    """Put back the process's SIGTERM/SIGINT handlers after code that replaces them.

    Joining a Ray cluster installs Ray's native handlers, which end the process on SIGTERM at
    once: uvicorn's graceful shutdown never runs, Kafka consumers never leave their groups and
    the next start waits out a rebalance. Use around such calls, from the main thread."""
    watched = signals or (signal.SIGTERM, signal.SIGINT)
    saved = {sig: signal.getsignal(sig) for sig in watched}
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in saved.items():
                if handler is not None:
                    signal.signal(sig, handler)


class RequestIdMiddleware:
    """Takes ``X-Request-ID`` from the request (or makes one), binds it for logs and events,
    and returns it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")[:128]
                break
        rid = bind_request_id(incoming)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (REQUEST_ID_HEADER.lower().encode(), rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            clear_request_id()


def build_app(
    *,
    service: str,
    title: str,
    version: str,
    description: str,
    settings: FleetSettings,
    lifespan: Any,
    openapi_tags: list[dict[str, str]] | None = None,
    max_body_bytes: int | None = None,
    audit_writes: bool = True,
) -> FastAPI:
    """A FastAPI app with the shared wiring; the service adds its routers. ``max_body_bytes``
    refuses larger request bodies with 413 (inside the request-id middleware, so even that
    answer carries its X-Request-ID). Every write and every refusal is handed to
    ``app.state.audit_sink`` (``fleet_core.audit``); ``audit_writes=False`` audits refusals only."""
    app = FastAPI(
        title=title,
        version=version,
        description=description,
        lifespan=_following_revocations(lifespan, settings),
        openapi_tags=openapi_tags,
    )
    install_problem_handlers(app)
    metrics = ServiceMetrics(service)
    metrics.install(app)
    if max_body_bytes is not None:
        app.add_middleware(DecodedBodyMiddleware, max_bytes=max_body_bytes)  # inside the size limit
        app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes)
    # Inside the request-id layer, so an audit entry carries the id its response carries.
    app.add_middleware(
        AuditMiddleware, service=service, audit_writes=audit_writes, skip_ok=service == "registry"
    )
    # Added last, so it is the outermost layer: every response, even a middleware's, gets its id.
    app.add_middleware(RequestIdMiddleware)
    app.state.metrics = metrics
    app.state.settings = settings
    app.state.tokens = settings.token_authority()
    app.state.readiness = []

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["health"], summary="Readiness, with each dependency's state")
    async def readyz() -> JSONResponse:
        checks: dict[str, dict[str, Any]] = {}
        ready = True
        for name, check in app.state.readiness:
            try:
                ok, detail = await check()
            except Exception as exc:
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            checks[name] = {"ok": ok, "detail": detail}
            ready = ready and ok
        return JSONResponse(
            {"status": "ready" if ready else "not-ready", "service": service, "checks": checks},
            status_code=200 if ready else 503,
        )

    return app


def _following_revocations(lifespan: Any, settings: FleetSettings) -> Any:
    """The service's lifespan, with its token authority following the registry's revocation list
    once the service has started (the registry sets ``app.state.revocation_source`` to read its own
    database; every other service asks the registry at ``registry_url``)."""

    @contextlib.asynccontextmanager
    async def wrapped(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app):
            source = getattr(app.state, "revocation_source", None)
            if source is None and settings.registry_url:
                source = registry_source(settings.registry_url, app.state.tokens)
            follower = None
            if source is not None:
                follower = RevocationFollower(
                    app.state.tokens, source, settings.revocation_refresh_s, app.state.metrics.registry
                )
                follower.start()
            app.state.revocations = follower
            try:
                yield
            finally:
                if follower is not None:
                    await follower.stop()

    return wrapped


class BodySizeLimitMiddleware:
    """Refuses bodies over ``max_bytes`` with 413 before they are buffered: by Content-Length
    when the client sends one, and by counting streamed bytes otherwise."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = problem(
                    status=413,
                    kind="payload-too-large",
                    title="Payload too large",
                    detail=f"the request body of {int(value)} bytes exceeds the limit of "
                    f"{self.max_bytes} bytes",
                    instance=scope.get("path", ""),
                )
                await response(scope, receive, send)
                return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, f"the request body exceeds the limit of {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)


CONTENT_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
"""Request ``Content-Encoding``s a service inflates (tritonclient's ``request_compression_algorithm``
sends gzip or deflate), with their zlib window bits."""


class DecodedBodyMiddleware:
    """Inflates ``Content-Encoding: gzip`` / ``deflate`` request bodies before the app reads them,
    to at most ``max_bytes``: a small body that inflates past the limit (a "zip bomb") is a 413 after
    ``max_bytes`` of output, never more. The compressed body itself is bounded by the
    ``BodySizeLimitMiddleware`` outside this one. An encoding it does not know is a 415; a body that
    is not what it claims, a 400."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        encoding = next((v for k, v in scope.get("headers", []) if k == b"content-encoding"), None)
        name = encoding.decode("latin-1").strip().lower() if encoding is not None else "identity"
        if name == "identity":
            await self.app(scope, receive, send)
            return
        wbits = CONTENT_ENCODINGS.get(name)
        if wbits is None:
            await self._refuse(
                scope,
                receive,
                send,
                415,
                "unsupported-media-type",
                "Unsupported content encoding",
                f"Content-Encoding {name[:40]!r} is not supported: send gzip, deflate or identity",
            )
            return
        chunks: list[bytes] = []
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except HTTPException as exc:  # the size limit outside, counting a body sent without a length
            await self._refuse(
                scope,
                receive,
                send,
                exc.status_code,
                "payload-too-large",
                "Payload too large",
                str(exc.detail),
            )
            return
        try:
            body = _inflate(b"".join(chunks), wbits, self.max_bytes)
        except _TooLarge:
            await self._refuse(
                scope,
                receive,
                send,
                413,
                "payload-too-large",
                "Payload too large",
                f"the {name} request body inflates past the limit of {self.max_bytes} bytes",
            )
            return
        except zlib.error as exc:
            await self._refuse(
                scope,
                receive,
                send,
                400,
                "bad-request",
                "Malformed request body",
                f"the request body is not valid {name} data: {exc}",
            )
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")]
        headers.append((b"content-length", str(len(body)).encode()))
        sent = False

        async def decoded() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app({**scope, "headers": headers}, decoded, send)

    @staticmethod
    async def _refuse(
        scope: Scope, receive: Receive, send: Send, status: int, kind: str, title: str, detail: str
    ) -> None:
        response = problem(
            status=status, kind=kind, title=title, detail=detail, instance=scope.get("path", "")
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


def _inflate(data: bytes, wbits: int, max_bytes: int) -> bytes:
    """``data`` inflated (every gzip member of it), or ``_TooLarge`` once it passes ``max_bytes``."""
    out = bytearray()
    while True:
        inflater = zlib.decompressobj(wbits)
        out += inflater.decompress(data, max_bytes + 1 - len(out))
        if len(out) > max_bytes or inflater.unconsumed_tail:
            raise _TooLarge
        if not inflater.eof:
            raise zlib.error("the compressed data ends early")
        data = inflater.unused_data
        if not data:
            return bytes(out)


def serve_http(app: FastAPI, host: str, port: int) -> None:
    """Run a service's app the way every ``python -m fleet_<service> serve`` does: one uvicorn
    worker (uvloop and httptools when installed), our structlog logging, no access log."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, proxy_headers=True)


def migrate_database(url: str, migrations: Path) -> None:
    """Apply a service's Alembic migrations to ``url`` and return (``python -m ... migrate``)."""
    import asyncio

    from fleet_core.db import Database

    async def migrate() -> None:
        db = Database(url)
        try:
            await db.migrate(migrations)
        finally:
            await db.dispose()

    asyncio.run(migrate())


def database_check(db: Database) -> ReadinessCheck:
    """Readiness: the service's database answers ``SELECT 1``; the detail names its dialect."""

    async def check() -> tuple[bool, str]:
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True, db.dialect

    return check


def outbox_check(relay: OutboxRelay) -> ReadinessCheck:
    """Readiness of a publishing service: always ready, since events wait in the outbox while the
    broker is away; the detail says whether it is, how many events wait, and how many the broker
    refused and the relay parked (when any)."""

    async def check() -> tuple[bool, str]:
        pending, parked = await relay.pending(), await relay.parked()
        state = "connected" if relay.connected else "unreachable"
        detail = f"broker {state}, {pending} event(s) pending"
        return True, detail + (f", {parked} parked" if parked else "")

    return check


async def run_every(name: str, interval_s: float, body: Callable[[], Awaitable[object]]) -> None:
    """Call ``body`` every ``interval_s`` until cancelled; a failure is logged and the loop goes on."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await body()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(f"{name} failed", error=f"{type(exc).__name__}: {exc}")


class Startable(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


S = TypeVar("S", bound=Startable)


async def start_when_possible(make: Callable[[], S], what: str) -> S:
    """Build and start ``make()`` (a broker, a consumer), retrying with backoff until it starts:
    a service comes up before its broker and keeps serving its API meanwhile."""
    backoff = 1.0
    while True:
        part = make()
        try:
            await part.start()
        except Exception as exc:
            log.warning(f"cannot start {what}; retrying", error=str(exc), retry_in_s=backoff)
            with contextlib.suppress(Exception):
                await part.stop()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        log.info(f"{what} started")
        return part


def service_main(
    service: str, settings_type: type[ServiceSettings], app_module: str, argv: list[str] | None = None
) -> int:
    """``python -m fleet_<service> [serve|migrate]``: run the HTTP service and its consumers, or
    apply the database migrations and exit. ``app_module`` has ``create_app`` and ``MIGRATIONS``;
    it is imported after logging is configured."""
    import argparse
    import importlib

    from fleet_core.log import configure_logging

    parser = argparse.ArgumentParser(prog=f"fleet_{service}", description=f"ModelFleet {service} service")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the HTTP service and event consumers (default)")
    sub.add_parser("migrate", help="apply database migrations and exit")
    args = parser.parse_args(argv)
    settings = settings_type()
    configure_logging(service, settings.log_level, settings.log_json)
    module = importlib.import_module(app_module)
    if args.command == "migrate":
        migrate_database(settings.resolved_database_url(service), module.MIGRATIONS)
        return 0
    serve_http(module.create_app(settings), settings.host, settings.port)
    return 0


class BackgroundConsumer:
    """A service's event consumer: started in the background (retrying until the broker answers,
    so the API serves meanwhile), reported by a readiness check, and stopped first at shutdown,
    bounded, so the group is left before anything else can stall (a member that never leaves makes
    the next start wait out a rebalance)."""

    def __init__(self, make: Callable[[], Startable], *, enabled: bool, name: str) -> None:
        self._make = make
        self.enabled = enabled
        self.name = name
        self.consumer: Startable | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._start(), name=self.name)

    async def _start(self) -> None:
        self.consumer = await start_when_possible(self._make, "the event consumer")

    async def check(self) -> tuple[bool, str]:
        if not self.enabled:
            return True, "event consumers disabled (FLEET_CONSUME_EVENTS=false)"
        return self.consumer is not None, "running" if self.consumer is not None else "starting"

    async def stop(self, timeout_s: float = 10.0) -> None:
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.consumer.stop(), timeout_s)
            log.info("event consumer stopped")
        await cancel_all([self._task] if self._task else [])


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel background tasks and wait until each has ended (their errors are not ours now)."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
