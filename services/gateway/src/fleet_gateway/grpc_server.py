"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``) on its own port.

grpcio's asyncio server runs in the gateway's process and event loop, next to the HTTP app, and
calls the same ``DataPlane`` (routing, validation, the model call, shadows, inference logging,
model metrics, feedback receipts) and the same ``Gatekeeper`` (bearer token, rate limit): the
transport only translates. Tokens travel as the metadata ``authorization: Bearer <token>``; the
routing key as ``x-fleet-routing-key``; a call's id is ``x-request-id`` when the client sends
one, else a new one. Every answer carries ``x-request-id`` in its trailing metadata, an
inference also ``x-fleet-model-version`` and ``x-fleet-feedback-receipt`` (the HTTP headers'
counterparts).

An error is the call's status: the code from ``STATUS_CODES`` (a ``FleetError``'s HTTP status
mapped, 422 to ``INVALID_ARGUMENT``...), the problem's ``detail`` as the message (what
``tritonclient`` shows), and the rich form in ``grpc-status-details-bin`` (``google.rpc.Status``
holding an ``ErrorInfo`` with the problem type and field, a ``BadRequest`` listing each field
violation, a ``RetryInfo`` when the client should retry later). Refused calls (401, 403) are
audited like refused HTTP requests; ``fleet_grpc_requests`` and
``fleet_grpc_request_duration_seconds`` count calls by method and code, as
``fleet_http_requests`` does for HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import CollectorRegistry, Counter, Histogram

from fleet_core.audit import AuditSink, caller_of
from fleet_core.auth import TokenAuthority
from fleet_core.errors import PROBLEM_BASE, FleetError, InvalidInput
from fleet_core.events import AuditRecorded
from fleet_core.log import bind_request_id, clear_request_id, get_logger
from fleet_core.service import ReadinessCheck
from fleet_gateway import __version__
from fleet_gateway.access import Gatekeeper
from fleet_gateway.api.inference import MAX_ROUTING_KEY, RECEIPT_HEADER
from fleet_gateway.dataplane import VERSION_HEADER, DataPlane
from fleet_gateway.grpc_codec import (
    infer_response,
    metadata_response,
    model_name,
    model_version,
    parse_infer_request,
)
from fleet_gateway.grpc_gen import grpc_predict_v2_pb2 as pb
from fleet_gateway.grpc_gen import grpc_predict_v2_pb2_grpc as pb_grpc
from fleet_gateway.protocol import requested_outputs

log = get_logger(__name__)

SERVICE = "inference.GRPCInferenceService"
SERVER_NAME = "modelfleet-gateway"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_DOMAIN = "modelfleet.dev"
MAX_REQUEST_ID = 128
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

STATUS_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    502: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
"""A ``FleetError``'s HTTP status as a gRPC status code; any other 4xx is ``FAILED_PRECONDITION``,
any other 5xx ``INTERNAL``."""

T = TypeVar("T")


def status_code_for(status: int) -> grpc.StatusCode:
    found = STATUS_CODES.get(status)
    if found is not None:
        return found
    return grpc.StatusCode.FAILED_PRECONDITION if 400 <= status < 500 else grpc.StatusCode.INTERNAL


def status_details(error: FleetError, code: grpc.StatusCode, request_id: str) -> bytes:
    """The error as a serialised ``google.rpc.Status``, the rich form of the call's status."""
    info = error_details_pb2.ErrorInfo(
        reason=error.kind.upper().replace("-", "_"),
        domain=ERROR_DOMAIN,
        metadata={
            "type": f"{PROBLEM_BASE}/{error.kind}",
            "title": error.title,
            "status": str(error.status),
            "request_id": request_id,
            **({"field": error.field} if error.field else {}),
        },
    )
    details = [info]
    violations = [
        error_details_pb2.BadRequest.FieldViolation(
            field=str(e.get("field", "")), description=str(e["message"])
        )
        for e in error.errors or []
        if isinstance(e, dict) and "message" in e
    ]
    if not violations and isinstance(error, InvalidInput) and error.field:
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.detail)
        ]
    if violations:
        details.append(error_details_pb2.BadRequest(field_violations=violations))
    retry_after = (error.headers or {}).get("Retry-After")
    if retry_after is not None and retry_after.isdigit():
        details.append(
            error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=int(retry_after)))
        )
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return status_pb2.Status(code=code.value[0], message=error.detail, details=packed).SerializeToString()


class GrpcMetrics:
    """``fleet_grpc_requests`` and ``fleet_grpc_request_duration_seconds`` (by method and code)."""

    def __init__(self, registry: CollectorRegistry, service: str = "gateway") -> None:
        self.service = service
        self.requests = Counter(
            "fleet_grpc_requests", "gRPC calls", ["service", "method", "code"], registry=registry
        )
        self.latency = Histogram(
            "fleet_grpc_request_duration_seconds",
            "gRPC call latency",
            ["service", "method"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self._children: dict[tuple[str, str], Any] = {}
        self._timers: dict[str, Any] = {}

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        key = (method, code.name)
        counter = self._children.get(key)
        if counter is None:
            counter = self._children[key] = self.requests.labels(self.service, method, code.name)
        counter.inc()
        timer = self._timers.get(method)
        if timer is None:
            timer = self._timers[method] = self.latency.labels(self.service, method)
        timer.observe(seconds)


def _metadata(context: grpc.aio.ServicerContext, *names: str) -> dict[str, str]:
    """The first value of each wanted (text) metadata key the client sent."""
    found: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key in names and key not in found and isinstance(value, str):
            found[key] = value
    return found


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The six RPCs of the protocol, each a translation onto the data plane."""

    def __init__(
        self,
        plane: DataPlane,
        gatekeeper: Gatekeeper,
        *,
        readiness: Sequence[tuple[str, ReadinessCheck]],
        metrics: GrpcMetrics,
        tokens: TokenAuthority,
        audit: AuditSink | None = None,
    ) -> None:
        self.plane = plane
        self.gatekeeper = gatekeeper
        self.readiness = readiness
        self.metrics = metrics
        self.tokens = tokens
        self.audit = audit

    # ------------------------------------------------------------------ the RPCs

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        async def work(_: dict[str, str]) -> pb.ServerLiveResponse:
            return pb.ServerLiveResponse(live=True)

        return await self._call("ServerLive", context, "", work)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        async def work(_: dict[str, str]) -> pb.ServerReadyResponse:
            return pb.ServerReadyResponse(ready=await self._ready())

        return await self._call("ServerReady", context, "", work)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        async def work(_: dict[str, str]) -> pb.ServerMetadataResponse:
            return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=[])

        return await self._call("ServerMetadata", context, "", work)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        async def work(md: dict[str, str]) -> pb.ModelReadyResponse:
            caller = self.gatekeeper.admit(md.get("authorization"))
            name = model_name(request.name, "name")
            ready = await self.plane.model_ready(caller, name, model_version(request.version, "version"))
            return pb.ModelReadyResponse(ready=ready)

        return await self._call("ModelReady", context, request.name, work)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        async def work(md: dict[str, str]) -> pb.ModelMetadataResponse:
            caller = self.gatekeeper.admit(md.get("authorization"))
            name = model_name(request.name, "name")
            meta = await self.plane.metadata(caller, name, model_version(request.version, "version"))
            return metadata_response(meta)

        return await self._call("ModelMetadata", context, request.name, work)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        async def work(md: dict[str, str]) -> pb.ModelInferResponse:
            caller = self.gatekeeper.admit(md.get("authorization"))
            name = model_name(request.model_name, "model_name")
            version = model_version(request.model_version, "model_version")
            routing_key = md.get("x-fleet-routing-key")
            if routing_key is not None and len(routing_key) > MAX_ROUTING_KEY:
                raise InvalidInput(
                    f"x-fleet-routing-key: at most {MAX_ROUTING_KEY} characters", field="x-fleet-routing-key"
                )
            parsed = parse_infer_request(request)
            request_id = md["x-request-id"]
            result = await self.plane.infer(
                caller, name, parsed, version=version, routing_key=routing_key, request_id=request_id
            )
            trailing = [("x-request-id", request_id), (VERSION_HEADER.lower(), str(result.version))]
            if result.receipt is not None:
                trailing.append((RECEIPT_HEADER.lower(), result.receipt))
            context.set_trailing_metadata(trailing)
            return infer_response(result, parsed.client_id or request_id, requested_outputs(parsed))

        return await self._call("ModelInfer", context, request.model_name, work)

    # ------------------------------------------------------------------ shared by every RPC

    async def _ready(self) -> bool:
        for _, check in self.readiness:
            try:
                ok, _ = await check()
            except Exception:
                ok = False
            if not ok:
                return False
        return True

    async def _call(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        model: str,
        work: Callable[[dict[str, str]], Awaitable[T]],
    ) -> T:
        """Run one RPC: bind its request id, answer errors as statuses, audit refusals, count it."""
        started = time.perf_counter()
        md = _metadata(context, "authorization", "x-request-id", "x-fleet-routing-key")
        request_id = bind_request_id(md.get("x-request-id", "")[:MAX_REQUEST_ID] or None)
        md["x-request-id"] = request_id
        code = grpc.StatusCode.OK
        try:
            answer = await work(md)
            if method != "ModelInfer":
                context.set_trailing_metadata((("x-request-id", request_id),))
            return answer
        except FleetError as error:
            code = status_code_for(error.status)
            if error.status in (401, 403):
                await self._audit_refusal(method, model, error.status, md.get("authorization"), request_id)
            trailing = [
                ("x-request-id", request_id),
                *((k.lower(), v) for k, v in (error.headers or {}).items()),
                (STATUS_DETAILS_KEY, status_details(error, code, request_id)),
            ]
            await context.abort(code, error.detail, trailing_metadata=tuple(trailing))
            raise AssertionError("context.abort returns only by raising") from error
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:
            if isinstance(error, grpc.aio.AbortError):
                raise
            code = grpc.StatusCode.INTERNAL
            log.exception("unhandled error in a gRPC call", method=method)
            await context.abort(
                code,
                "An unexpected error occurred; see the service log for the request id",
                trailing_metadata=(("x-request-id", request_id),),
            )
            raise AssertionError("context.abort returns only by raising") from error
        finally:
            self.metrics.observe(method, code, time.perf_counter() - started)
            clear_request_id()

    async def _audit_refusal(
        self, method: str, model: str, status: int, authorization: str | None, request_id: str
    ) -> None:
        if self.audit is None:
            return
        actor, role = caller_of(authorization, self.tokens)
        entry = AuditRecorded(
            service="gateway",
            actor=actor,
            role=role,
            action=f"GRPC /{SERVICE}/{method}",
            resource=f"/v2/models/{model[:100]}",
            outcome="denied",
            status=status,
            at=datetime.now(UTC),
            request_id=request_id,
        )
        try:
            await self.audit(entry)
        except Exception as exc:  # the audit must never fail or stall the answer
            log.warning("audit entry not recorded", error=repr(exc), method=method)


class GrpcGateway:
    """The gRPC server's lifecycle: bound at start, stopped gracefully (in-flight calls finish
    within the grace period; new ones are refused at once)."""

    def __init__(
        self,
        servicer: InferenceServicer,
        *,
        host: str,
        port: int,
        max_receive_bytes: int,
        max_send_bytes: int,
    ) -> None:
        self.servicer = servicer
        self.host = host
        self.port = port
        self.max_receive_bytes = max_receive_bytes
        self.max_send_bytes = max_send_bytes
        self.bound_port: int | None = None
        self._server: grpc.aio.Server | None = None

    async def start(self) -> int:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.max_receive_bytes),
                ("grpc.max_send_message_length", self.max_send_bytes),
                # Fail like the HTTP port when another process holds the port, rather than
                # silently sharing its traffic (grpc's default on Linux is SO_REUSEPORT).
                ("grpc.so_reuseport", 0),
            ]
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self.servicer, server)
        address = f"{self.host}:{self.port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise RuntimeError(f"the gRPC endpoint cannot listen on {address}: {exc}") from exc
        if not bound:
            raise RuntimeError(f"the gRPC endpoint cannot listen on {address}")
        await server.start()
        self._server = server
        self.bound_port = bound
        log.info("gRPC endpoint listening", address=f"{self.host}:{bound}", service=SERVICE)
        return bound

    async def stop(self, grace_s: float) -> None:
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
            log.info("gRPC endpoint stopped")


__all__ = [
    "STATUS_CODES",
    "GrpcGateway",
    "GrpcMetrics",
    "InferenceServicer",
    "status_code_for",
    "status_details",
]
