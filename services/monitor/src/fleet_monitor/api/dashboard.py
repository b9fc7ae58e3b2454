"""The ops dashboard (static, served at the root) and its live feed (Server-Sent Events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from sse_starlette.sse import EventSourceResponse

from fleet_monitor.api.deps import EngineDep, OverviewParams, Reader, StoreDep
from fleet_monitor.views import overview

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get(
    "/v1/stream",
    summary="Live fleet overview (Server-Sent Events)",
    description="An `overview` event carrying the same JSON as `GET /v1/overview` with the same "
    "filters, sort and page, every `FLEET_STREAM_INTERVAL_S` seconds (2 by default), limited to the "
    "caller's teams.",
)
async def stream(
    request: Request, engine: EngineDep, store: StoreDep, reader: Reader, query: OverviewParams
) -> EventSourceResponse:
    interval = request.app.state.settings.stream_interval_s

    async def events() -> AsyncIterator[dict[str, str]]:
        while True:
            # Visibility is evaluated on every event: a model registered later joins the feed.
            async with store.transaction() as s:
                firing = await store.firing_counts(s)
            page = overview(engine, firing, sees=reader.sees, query=query)
            yield {"event": "overview", "data": page.model_dump_json()}
            await asyncio.sleep(interval)

    return EventSourceResponse(events(), ping=15)
