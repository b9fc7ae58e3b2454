"""The gateway's FastAPI app: wiring and lifespan (Ray driver, route source, Kafka, log sender)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from fleet_core.model_series import ModelSeriesPolicy, ModelSeriesSelector
from fleet_core.service import build_app
from fleet_core.serving import RoutesSnapshot
from fleet_gateway import __version__
from fleet_gateway.access import Gatekeeper, RateLimiter, TokenCache
from fleet_gateway.api.inference import INFER_SCHEMAS
from fleet_gateway.api.main import api_router
from fleet_gateway.backend import RayBackend, ServingBackend
from fleet_gateway.batching import BatchingBackend, BatchMetrics, BatchPolicy
from fleet_gateway.dataplane import DataPlane
from fleet_gateway.deployer_client import DeployerClient
from fleet_gateway.events import AuditPublisher, FeedbackPublisher, RolloutFollower
from fleet_gateway.fastpath import InferFastPath
from fleet_gateway.grpc_server import GrpcGateway, GrpcMetrics, InferenceServicer
from fleet_gateway.inference_log import InferenceLogSink, KafkaLogTransport, LogTransport
from fleet_gateway.local import LocalBackend, LocalMetrics, LocalModels, LocalPolicy
from fleet_gateway.metrics import GatewayMetrics
from fleet_gateway.route_source import DeployerRouteSource
from fleet_gateway.routing import RouteBook
from fleet_gateway.served import FeedbackReceipts, ServedRequests
from fleet_gateway.settings import GatewaySettings

DESCRIPTION = """\
The ModelFleet gateway: Open Inference Protocol v2 (`/v2/models/{name}/infer`,
`/v2/models/{name}/versions/{v}/infer`, metadata and health) plus a plain JSON form, in front of
Ray Serve deployments called through DeploymentHandles. Requests are validated against the
version's signature, routed by the model's route table (weighted, sticky by
`X-Fleet-Routing-Key`, shadow copies), logged to `inference.logged`, and answered with
`X-Fleet-Model-Version` and `X-Fleet-Feedback-Receipt`. `POST /v1/feedback` records ground truth
for a request the model answered (send the receipt back), from a token of the model's team.

A body is at most `FLEET_MAX_BODY_MB` (413), a request at most `FLEET_MAX_ROWS` rows, and a
tensor's `shape` may claim no more rows, dimensions or values than that and the signature allow
(422 naming `inputs.<tensor>.shape`).

Every error is RFC 9457 `application/problem+json` naming the field or reason.
Authenticate with `Authorization: Bearer <token>`.
"""


def create_app(
    settings: GatewaySettings | None = None,
    *,
    backend: ServingBackend | None = None,
    routes: RoutesSnapshot | None = None,
    log_transport: LogTransport | None = None,
    feedback: FeedbackPublisher | None = None,
) -> FastAPI:
    """The gateway. Tests inject a backend, a routes snapshot (then the deployer is not asked and
    ``rollout.updated`` is still followed when ``follow_rollouts``), a log transport or a feedback
    publisher; by default they are Ray, the deployer and Kafka."""
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics: GatewayMetrics = app.state.gateway_metrics
        book: RouteBook = app.state.routes
        serving = backend or RayBackend(
            settings.ray_address,
            timeout_s=settings.predict_timeout_s,
            max_retries=settings.predict_retries,
            on_retry=metrics.replica_retry,
        )
        default_batching = BatchPolicy(
            max_rows=settings.batch_max_rows,
            max_delay_ms=settings.batch_max_delay_ms,
            max_inflight=settings.batch_max_inflight,
        )
        serving = BatchingBackend(
            serving,
            BatchMetrics(app.state.metrics.registry),
            lambda served: default_batching.overridden(book.batching(served.spec.model)),
            pool_policy=default_batching if settings.batch_across_models else None,
        )
        local = LocalModels(
            settings,
            LocalPolicy(
                budget_bytes=int(settings.local_models_mb * 2**20),
                max_model_bytes=int(settings.local_model_max_mb * 2**20),
                promote_after=settings.local_promote_after,
                max_predict_ms=settings.local_max_predict_ms,
                keep_s=settings.local_keep_s,
                idle_s=settings.local_idle_s,
            ),
            LocalMetrics(app.state.metrics.registry),
        )
        app.state.local_models = local
        serving = LocalBackend(serving, local, book.compares)
        sink = InferenceLogSink(
            log_transport or KafkaLogTransport(settings.kafka_servers, linger_ms=settings.log_linger_ms),
            metrics,
            queue_size=settings.log_queue_size,
            batch_size=settings.log_batch_size,
            linger_ms=settings.log_linger_ms,
            pii_salt=settings.pii_salt,
        )
        source: DeployerRouteSource | None = None
        if routes is not None:
            book.apply_snapshot(routes.models)
        else:
            source = DeployerRouteSource(
                book,
                app.state.tokens,
                metrics,
                deployer_url=settings.deployer_url,
                resync_s=settings.routes_resync_s,
                refresh_min_interval_s=settings.routes_refresh_min_interval_s,
                timeout_s=settings.routes_fetch_timeout_s,
                unknown_lookups_per_s=settings.routes_unknown_lookups_per_s,
            )

        async def lookup(model: str) -> bool:
            return await source.lookup(model) if source else False

        async def refresh_model(model: str) -> None:
            if source is not None:
                await source.refresh_model(model)

        follower = (
            RolloutFollower(settings.kafka_servers, book, metrics, on_unknown_versions=refresh_model)
            if settings.follow_rollouts
            else None
        )
        publisher = feedback or FeedbackPublisher(
            settings.kafka_servers, timeout_s=settings.feedback_timeout_s
        )
        plane = DataPlane(
            book,
            serving,
            sink,
            metrics,
            lookup=lookup,
            max_rows=settings.max_rows,
            shadow_timeout_s=settings.shadow_timeout_s,
            served_requests=ServedRequests(
                per_model=settings.feedback_memory_per_model, window_s=settings.feedback_window_s
            ),
            receipts=FeedbackReceipts(settings.pii_salt, ttl_s=settings.feedback_receipt_ttl_s),
        )

        async def routes_loaded() -> tuple[bool, str]:
            if book.loaded:
                return True, f"{len(book.models())} model(s)"
            return False, f"waiting for the deployer: {source.last_error if source else 'no source'}"

        async def log_sink() -> tuple[bool, str]:
            # Logging never gates serving: report, but stay ready while the broker is away.
            state = "connected" if sink.connected else "broker unreachable"
            return True, f"{state}, {sink.pending} record(s) queued"

        app.state.readiness = [
            ("routes", routes_loaded),
            ("serving", serving.ready),
            ("inference_log", log_sink),
        ]
        audit = AuditPublisher(settings.kafka_servers, metrics)
        app.state.audit_sink = audit.record
        app.state.dataplane = plane
        app.state.feedback = publisher
        app.state.route_source = source
        app.state.follower = follower
        app.state.log_sink = sink
        app.state.deployer = DeployerClient(settings.deployer_url, timeout_s=settings.repository_timeout_s)

        await serving.start()
        sink.start()
        audit.start()
        if follower is not None:
            follower.start()
        if source is not None:
            source.start()
        grpc_gateway = _grpc_gateway(app, settings, plane)
        app.state.grpc = grpc_gateway
        try:
            if grpc_gateway is not None:
                await grpc_gateway.start()
            yield
        finally:
            # First, while the model calls they wait for can still be answered.
            if grpc_gateway is not None:
                await grpc_gateway.stop(settings.grpc_shutdown_grace_s)
            if source is not None:
                await source.stop()
            if follower is not None:
                await follower.stop()
            await plane.drain_shadows(timeout_s=2.0)
            await sink.stop()
            await audit.stop()
            await publisher.close()
            await app.state.deployer.close()
            await serving.close()

    app = build_app(
        service="gateway",
        title="ModelFleet gateway",
        version=__version__,
        description=DESCRIPTION,
        settings=settings,
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
        # Inference and feedback POSTs are traffic (inference.logged, inference.feedback), not
        # writes to audit; refused attempts are audited.
        audit_writes=False,
        openapi_tags=[
            {"name": "inference", "description": "Open Inference Protocol v2 and the plain JSON form"},
            {"name": "health", "description": "Liveness and readiness"},
            {"name": "feedback", "description": "Ground truth for earlier requests"},
            {"name": "repository", "description": "OIP model repository extension: index, load, unload"},
        ],
    )
    app.state.routes = RouteBook()
    book = app.state.routes
    app.state.gateway_metrics = GatewayMetrics(
        app.state.metrics.registry,
        series=ModelSeriesSelector(
            ModelSeriesPolicy.parse(settings.metrics_model_series),
            rank_interval_s=settings.metrics_rank_interval_s,
        ),
        team_of=lambda model: book.team(model) if book.knows(model) else None,
    )
    app.state.grpc_metrics = GrpcMetrics(app.state.metrics.registry)
    app.state.gatekeeper = Gatekeeper(
        TokenCache(app.state.tokens, settings.token_cache_s),
        RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst),
    )
    app.include_router(api_router)
    # Outermost of the app's own layers: the two infer routes skip FastAPI's router (fastpath.py).
    app.add_middleware(InferFastPath, fleet_app=app, max_body_bytes=settings.max_body_bytes)
    _add_openapi_components(app, INFER_SCHEMAS)
    return app


def _grpc_gateway(app: FastAPI, settings: GatewaySettings, plane: DataPlane) -> GrpcGateway | None:
    """The gRPC endpoint over the same data plane, gatekeeper, readiness and audit (None when
    ``FLEET_GRPC_PORT`` is 0)."""
    if not settings.grpc_port:
        return None
    servicer = InferenceServicer(
        plane,
        app.state.gatekeeper,
        readiness=app.state.readiness,
        metrics=app.state.grpc_metrics,
        tokens=app.state.tokens,
        audit=app.state.audit_sink,
    )
    return GrpcGateway(
        servicer,
        host=settings.host,
        port=settings.grpc_port,
        max_receive_bytes=settings.max_body_bytes,
        max_send_bytes=4 * settings.max_body_bytes,
    )


def _add_openapi_components(app: FastAPI, schemas: dict[str, Any]) -> None:
    """Put schemas that operations refer to by hand (the raw-body infer routes) into the document's
    components, so that every ``$ref`` in ``/openapi.json`` resolves."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        cached = app.openapi_schema is not None
        document = generate()  # FastAPI caches the document in app.openapi_schema
        if not cached:
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in schemas.items():
                components.setdefault(name, schema)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
