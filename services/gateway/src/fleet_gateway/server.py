"""How the gateway process serves HTTP: which server runs the app, and how many worker processes
share its port.

``uvicorn`` (uvloop + httptools) with one worker is the gateway's way to run (ADR 0031 has the
measurements against the alternatives). Two alternatives stay runnable, so they can be measured
again (``bench/http_stack.py``) and chosen by a setting rather than a code change:

- ``granian`` (Rust HTTP server, ASGI interface with lifespan), when installed;
- several worker processes on one port (uvicorn's or granian's supervisor hands each the listening
  socket). Every worker is a whole gateway: its own lifespan, so its own Ray driver, route source,
  ``rollout.updated`` follower (no consumer group, so each sees every update), inference log and
  audit producers, rate limiter, batcher and ``/metrics``.

A worker process builds its app with :func:`worker_app` from the environment, since a supervisor
starts its workers by import string.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI

from fleet_core.log import configure_logging
from fleet_gateway.settings import GatewaySettings

GatewayServer = Literal["uvicorn", "granian"]
WORKER_APP = "fleet_gateway.server:worker_app"
"""The factory each worker process imports and calls (``--factory``)."""


def worker_app() -> FastAPI:
    """The gateway app of one worker process, from its ``FLEET_*`` environment."""
    from fleet_gateway.app import create_app

    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_json)
    return create_app(settings)


def serve(settings: GatewaySettings) -> None:
    """Run the gateway with ``settings.gateway_server`` and ``settings.gateway_workers`` until
    SIGTERM or SIGINT; every worker runs the app's lifespan (startup and graceful shutdown)."""
    if settings.gateway_server == "granian":
        serve_granian(settings)
    elif settings.gateway_workers > 1:
        serve_uvicorn_workers(settings)
    else:
        from fleet_core.service import serve_http
        from fleet_gateway.app import create_app

        serve_http(create_app(settings), settings.host, settings.port)


def serve_uvicorn_workers(settings: GatewaySettings) -> None:
    """uvicorn's supervisor: binds the port once and spawns ``gateway_workers`` processes on it."""
    import uvicorn

    uvicorn.run(
        WORKER_APP,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.gateway_workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )


def serve_granian(settings: GatewaySettings) -> None:
    """granian's ASGI server (lifespan on, uvloop), ``gateway_workers`` processes on one socket."""
    try:
        from granian.constants import Interfaces, Loops
        from granian.server import Server
    except ImportError as exc:  # the gateway's own dependencies name uvicorn only
        raise RuntimeError(
            "FLEET_GATEWAY_SERVER=granian needs the granian package (`uv add granian` to the gateway)"
        ) from exc

    options: dict[str, Any] = {
        "address": settings.host,
        "port": settings.port,
        "interface": Interfaces.ASGI,
        "workers": settings.gateway_workers,
        "loop": Loops.uvloop,
        "factory": True,
        "log_access": False,
        # Stop a worker that ignores SIGTERM instead of waiting forever (the stack's own grace is 15 s).
        "workers_kill_timeout": 12,
    }
    Server(WORKER_APP, **options).serve()
