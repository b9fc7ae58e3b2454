"""Serve an ASGI app on a loopback port from inside a test, lifespan included, for services that
must reach each other over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from fleet_sdk.embedded_broker import free_port


@asynccontextmanager
async def serving(app: Any, *, lifespan: str = "on", timeout_s: float = 60.0) -> AsyncIterator[str]:
    """``app`` listening on 127.0.0.1; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan=lifespan)
    )
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not server.started:
        if task.done():
            task.result()  # the server failed to start: raise its error
            raise AssertionError("uvicorn stopped before it started")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the app did not start listening within {timeout_s} s")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
