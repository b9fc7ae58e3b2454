"""The gateway under another HTTP stack, for ``bench/http_stack.py``: the same app as
``python -m fleet_gateway serve`` (``fleet_gateway.app.create_app`` from the ``FLEET_*``
environment, its whole lifespan), run by the server and worker count given here.

    python bench/gateway_server.py --server uvicorn|granian [--workers N]

- ``uvicorn``, one worker: what ``python -m fleet_gateway serve`` runs (``fleet_core.service.serve_http``:
  uvloop + httptools, no access log, proxy headers).
- ``uvicorn`` with N workers: uvicorn's supervisor binds the port once and spawns N processes.
- ``granian``: granian's ASGI interface with lifespan, uvloop, N worker processes on one socket.

Every worker is a whole gateway with its own lifespan: its own Ray driver, route source,
``rollout.updated`` follower, inference-log and audit producers, rate limiter, batcher, ``/metrics``.
ADR 0031 has the measurements; none of these replaced the gateway's own way to run.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")

from fastapi import FastAPI

WORKER_APP = "gateway_server:worker_app"
"""The factory each worker process imports (bench/ is on its path) and calls."""


def worker_app() -> FastAPI:
    """One worker's gateway app, from its ``FLEET_*`` environment, with the gateway's logging."""
    from fleet_core.log import configure_logging
    from fleet_gateway.app import create_app
    from fleet_gateway.settings import GatewaySettings

    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_json)
    return create_app(settings)


def serve_uvicorn(host: str, port: int, workers: int) -> None:
    import uvicorn

    if workers == 1:  # exactly the gateway's own path
        from fleet_core.service import serve_http

        serve_http(worker_app(), host, port)
        return
    uvicorn.run(
        WORKER_APP,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )


def serve_granian(host: str, port: int, workers: int) -> None:
    from granian.constants import Interfaces, Loops
    from granian.server import Server

    Server(
        WORKER_APP,
        address=host,
        port=port,
        interface=Interfaces.ASGI,  # with lifespan ("asginl" would skip it)
        workers=workers,
        loop=Loops.uvloop,
        factory=True,
        log_access=False,
        workers_kill_timeout=12,  # below the stack's 15 s grace
    ).serve()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", choices=["uvicorn", "granian"], required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    host, port = os.environ.get("FLEET_HOST", "127.0.0.1"), int(os.environ["FLEET_PORT"])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # workers import WORKER_APP
    if args.server == "granian":
        serve_granian(host, port, args.workers)
    else:
        serve_uvicorn(host, port, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
