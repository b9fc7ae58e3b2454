"""The deployer's FastAPI app: wiring and lifespan (database, migrations, outbox relay, Ray Serve
control, event consumers, reconcile and activity loops)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from fleet_core.broker import ConsumerMetrics
from fleet_core.db import Database
from fleet_core.log import get_logger
from fleet_core.outbox import OutboxMetrics, OutboxRelay
from fleet_core.service import (
    BackgroundConsumer,
    build_app,
    cancel_all,
    database_check,
    keep_signal_handlers,
    outbox_check,
    run_every,
)
from fleet_deployer import __version__
from fleet_deployer.api.main import api_router
from fleet_deployer.controller import DeploymentController, ServingPolicy
from fleet_deployer.events import deployer_consumer
from fleet_deployer.models import MESSAGING
from fleet_deployer.pool_apply import PoolMetrics
from fleet_deployer.registry_client import RegistryClient
from fleet_deployer.serving_control import ServingControlPort, ServingDriver
from fleet_deployer.settings import DeployerSettings
from fleet_deployer.store import DeployerStore

MIGRATIONS = Path(__file__).parent / "migrations"
log = get_logger(__name__)
SHUTDOWN_GRACE_S = 10.0
"""How long a stopping deployer lets recorded registrations finish deploying (the rest resume)."""

DESCRIPTION = """\
The ModelFleet deployer: places model versions on Ray Serve (the shared multi-model pool, or a
dedicated deployment when a version carries a resource quota), keeps each model's route table
(weighted, sticky and shadow arms, with a revision that increases on every change) and runs
rollouts. Every route change is published whole on `rollout.updated`.

Every error is RFC 9457 `application/problem+json` naming the field or reason.
Authenticate with `Authorization: Bearer <token>`.
"""


def default_serving_control() -> ServingControlPort:
    """The real engine, imported only when a Ray address is configured."""
    from fleet_serving.control import ServingControl

    control: ServingControlPort = ServingControl()
    return control


def create_app(
    settings: DeployerSettings | None = None, *, serving_control: ServingControlPort | None = None
) -> FastAPI:
    """The app; ``serving_control`` replaces the Ray-backed engine (tests pass a fake)."""
    settings = settings or DeployerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url("deployer"))
        if settings.run_migrations:
            await db.migrate(MIGRATIONS)
        relay = OutboxRelay(
            db.sessions,
            MESSAGING.outbox,
            settings.kafka_servers,
            poll_interval_s=settings.outbox_poll_interval_s,
            metrics=OutboxMetrics(app.state.metrics.registry),
        )
        control = serving_control
        control_error: str | None = None
        if control is None and settings.ray_address:
            try:
                control = default_serving_control()
            except ImportError as exc:
                control_error = f"fleet_serving.control is not available: {exc}"
        serving = ServingDriver(control, settings.ray_address)
        registry = RegistryClient(
            settings.registry_url,
            settings.token_authority(),
            timeout_s=settings.registry_timeout_s,
        )
        controller = DeploymentController(
            DeployerStore(db, on_commit=relay.notify),
            serving,
            policy=ServingPolicy(
                sizing=settings.pool_sizing, idle_unload_s=settings.idle_unload_s, env=settings.replica_env()
            ),
            registry=registry,
            pool_metrics=PoolMetrics(app.state.metrics.registry),
        )
        app.state.db = db
        app.state.relay = relay
        app.state.controller = controller
        app.state.audit_sink = controller.store.record_audit
        reconciled = asyncio.Event()
        consumer_metrics = ConsumerMetrics(app.state.metrics.registry)

        async def supervise_serving() -> None:
            """Connect to Ray (retrying), reconcile once, then reconcile periodically."""
            if serving.enabled:
                backoff = 1.0
                while not serving.connected:
                    try:
                        with keep_signal_handlers():
                            await serving.connect()
                    except Exception as exc:
                        log.warning("cannot connect to Ray; retrying", error=str(exc), retry_in_s=backoff)
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 30.0)
                log.info("connected to Ray", address=settings.ray_address)
            try:
                await controller.reconcile(initial=True)
            except Exception as exc:
                log.warning("initial reconcile failed", error=f"{type(exc).__name__}: {exc}")
            reconciled.set()
            await run_every("reconcile", settings.reconcile_interval_s, controller.reconcile)

        consumer = BackgroundConsumer(
            lambda: deployer_consumer(
                settings.kafka_servers,
                controller,
                app.state.tokens,
                max_attempts=settings.dlq_max_attempts,
                metrics=consumer_metrics,
            ),
            enabled=settings.consume_events,
            name="deployer-consumer",
        )

        async def ray_state() -> tuple[bool, str]:
            if control_error:
                return False, control_error
            if not serving.enabled:
                return True, "serving control disabled (FLEET_RAY_ADDRESS not set): deployments stay pending"
            if serving.connected and reconciled.is_set():
                return True, f"connected to {settings.ray_address}, reconciled"
            if serving.connected:
                return False, f"connected to {settings.ray_address}, reconciling"
            return False, f"connecting to {settings.ray_address}: {serving.last_error or 'not yet'}"

        app.state.readiness = [
            ("database", database_check(db)),
            ("outbox", outbox_check(relay)),
            ("ray", ray_state),
            ("consumers", consumer.check),
        ]
        relay.start()
        tasks = [
            asyncio.create_task(supervise_serving(), name="deployer-serving"),
            asyncio.create_task(
                run_every("progressive rollouts", settings.progress_interval_s, controller.progress_tick),
                name="deployer-progress",
            ),
            asyncio.create_task(
                run_every("activity flush", settings.activity_flush_interval_s, controller.flush_activity),
                name="deployer-activity",
            ),
        ]
        consumer.start()
        try:
            yield
        finally:
            await consumer.stop()
            with contextlib.suppress(TimeoutError):
                # Deploys of recorded registrations; what is left is resumed at the next start.
                await asyncio.wait_for(controller.idle(), SHUTDOWN_GRACE_S)
            await controller.close()
            await cancel_all(tasks)
            with contextlib.suppress(Exception):
                await controller.flush_activity()
            await relay.stop()
            await registry.close()
            await db.dispose()

    app = build_app(
        service="deployer",
        title="ModelFleet deployer",
        version=__version__,
        description=DESCRIPTION,
        settings=settings,
        lifespan=lifespan,
        max_body_bytes=2**20,
        openapi_tags=[
            {"name": "routes", "description": "Route tables: who gets which share of a model's traffic"},
            {"name": "deployments", "description": "Versions placed on Ray Serve (pool or dedicated)"},
            {"name": "rollouts", "description": "Rollouts and rollbacks"},
        ],
    )
    app.include_router(api_router)
    return app
