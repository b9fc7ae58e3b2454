"""The retrainer's FastAPI app: wiring and lifespan (database, outbox relay, consumer, scheduled
retraining, recovery of interrupted jobs)."""

from __future__ import annotations

import asyncio
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
    outbox_check,
    run_every,
)
from fleet_retrainer import __version__
from fleet_retrainer.api.main import api_router
from fleet_retrainer.checks import VersionChecker
from fleet_retrainer.engine import RetrainController
from fleet_retrainer.events import retrainer_consumer
from fleet_retrainer.models import MESSAGING
from fleet_retrainer.platform import Fleet
from fleet_retrainer.settings import RetrainerSettings
from fleet_retrainer.store import RetrainerStore
from fleet_retrainer.trainer import LocalTrainer, RayTrainer, Trainer
from fleet_serving.settings import ServingSettings

MIGRATIONS = Path(__file__).parent / "migrations"
log = get_logger(__name__)

DESCRIPTION = """\
The ModelFleet retrainer: turns `drift.detected`, `retrain.requested`, `dataset.updated` and
schedules into retraining jobs under a per-model policy (cooldown, one job per model, a box-wide
limit, a minimum of new labelled rows). A job rebuilds the model by its recipe on its training
data plus labelled traffic (a Ray task), judges champion and candidate on the same holdout,
registers a winner with its lineage and requests a canary, or rejects the loser with reasons;
every outcome is published on `retrain.completed`.

Every error is RFC 9457 `application/problem+json`. Authenticate with `Authorization: Bearer <token>`.
"""


def create_app(settings: RetrainerSettings | None = None, *, trainer: Trainer | None = None) -> FastAPI:
    settings = settings or RetrainerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url("retrainer"))
        if settings.run_migrations:
            await db.migrate(MIGRATIONS)
        prometheus = app.state.metrics.registry
        relay = OutboxRelay(
            db.sessions,
            MESSAGING.outbox,
            settings.kafka_servers,
            poll_interval_s=settings.outbox_poll_interval_s,
            metrics=OutboxMetrics(prometheus),
        )
        chosen = trainer or (
            RayTrainer(
                settings.ray_address,
                num_cpus=settings.job_num_cpus,
                memory_mb=settings.job_memory_mb,
                timeout_s=settings.job_timeout_s,
            )
            if settings.ray_address
            else LocalTrainer()
        )
        fleet = Fleet(
            settings.registry_url, settings.monitor_url, app.state.tokens, deployer_url=settings.deployer_url
        )
        checker = VersionChecker(fleet, settings)
        app.state.checker = checker
        controller = RetrainController(
            RetrainerStore(db, on_commit=relay.notify),
            fleet,
            chosen,
            default_policy=settings.default_policy(),
            canary_steps=settings.steps,
            canary_step_interval_s=settings.canary_step_interval_s,
            max_concurrent_jobs=settings.max_concurrent_jobs,
            trusted_types=ServingSettings.of(settings).serving_trusted_types,
        )
        app.state.controller = controller
        app.state.audit_sink = controller.store.record_audit
        consumer_metrics = ConsumerMetrics(prometheus)

        consumer = BackgroundConsumer(
            lambda: retrainer_consumer(
                settings.kafka_servers,
                controller,
                checker,
                max_attempts=settings.dlq_max_attempts,
                metrics=consumer_metrics,
            ),
            enabled=settings.consume_events,
            name="retrainer-consumer",
        )

        app.state.readiness = [
            ("database", database_check(db)),
            ("outbox", outbox_check(relay)),
            ("consumers", consumer.check),
        ]
        relay.start()
        failed = await controller.recover()
        if failed:
            log.warning("jobs interrupted by a restart were marked failed", jobs=failed)
        tasks = [
            asyncio.create_task(
                run_every("scheduled retraining", settings.schedule_check_s, controller.schedule_tick),
                name="retrainer-schedule",
            )
        ]
        consumer.start()
        try:
            yield
        finally:
            await consumer.stop()
            await cancel_all(tasks)
            await controller.stop()
            await relay.stop()
            await db.dispose()

    app = build_app(
        service="retrainer",
        title="ModelFleet retrainer",
        version=__version__,
        description=DESCRIPTION,
        settings=settings,
        lifespan=lifespan,
        max_body_bytes=2**20,
        openapi_tags=[
            {"name": "jobs", "description": "Retraining jobs"},
            {"name": "policies", "description": "When a model retrains"},
        ],
    )
    app.include_router(api_router)
    return app
