"""``/v2``, ``/v2/health/live`` and ``/v2/health/ready`` (no token: for load balancers and probes)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from fleet_core.oip import MetadataServerResponse, ServerLiveResponse, ServerReadyResponse
from fleet_gateway import __version__
from fleet_gateway.binary import EXTENSION as BINARY_EXTENSION

router = APIRouter(prefix="/v2", tags=["health"])


@router.get("", summary="Server metadata")
async def server_metadata() -> MetadataServerResponse:
    return MetadataServerResponse(
        name="modelfleet-gateway",
        version=__version__,
        extensions=["plain-json", "model_repository", BINARY_EXTENSION],
    )


@router.get("/health/live", summary="The process is up")
async def live() -> ServerLiveResponse:
    return ServerLiveResponse(live=True)


@router.get(
    "/health/ready",
    summary="Routes are loaded and the serving backend is reachable (503 until then)",
    response_model=ServerReadyResponse,
)
async def ready(request: Request) -> JSONResponse:
    checks = {}
    ok = True
    for name, check in request.app.state.readiness:
        passed, detail = await check()
        checks[name] = {"ok": passed, "detail": detail}
        ok = ok and passed
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)
