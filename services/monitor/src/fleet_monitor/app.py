"""The monitor's FastAPI app: wiring and lifespan (database, outbox relay, engine, consumers, the
timer, the lake flusher and the Alertmanager notifier)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from fleet_core.broker import ConsumerMetrics
from fleet_core.db import Database
from fleet_core.log import get_logger
from fleet_core.model_series import ModelSeriesPolicy, ModelSeriesSelector
from fleet_core.outbox import OutboxMetrics, OutboxRelay
from fleet_core.service import (
    BackgroundConsumer,
    build_app,
    cancel_all,
    database_check,
    outbox_check,
    run_every,
)
from fleet_monitor import __version__
from fleet_monitor.api.dashboard import STATIC
from fleet_monitor.api.main import api_router
from fleet_monitor.engine import MonitorEngine
from fleet_monitor.entities import Alert
from fleet_monitor.events import monitor_consumer
from fleet_monitor.exposition import MonitorCollector
from fleet_monitor.lake import InferenceLake
from fleet_monitor.models import MESSAGING
from fleet_monitor.notifier import AlertNotifier
from fleet_monitor.registry_client import RegistryClient
from fleet_monitor.settings import MonitorSettings
from fleet_monitor.store import MonitorStore

MIGRATIONS = Path(__file__).parent / "migrations"
log = get_logger(__name__)

DESCRIPTION = """\
The ModelFleet monitor: sliding windows of every model version's traffic, errors and latency;
data, prediction and concept drift against the version's reference profile; anomalies against
robust baselines; alerts with a firing → resolved lifecycle (pushed to Alertmanager when
configured); verdicts for canary and A/B rollouts; and the inference lake (Parquet) that
retraining reads. The ops dashboard is served at `/`; Prometheus metrics at `/metrics`.

Every read needs a `viewer` token of the model's team and shows only the token's teams; a model
with no known team is visible to admins only. The embedded stack (`FLEET_MODE=embedded`) also
allows anonymous reads (`FLEET_ANONYMOUS_READ`, refused in production). Changing thresholds needs
`deployer` on the model's team. Erasing a data subject (`DELETE /v1/subjects/{subject}`) needs
`admin`.
Every error is RFC 9457 `application/problem+json` naming the field or reason.
"""

RESEND_FIRING_S = 60.0
RETENTION_EVERY_S = 3600.0


def tune_garbage_collector() -> None:
    """Fewer, cheaper collections for a process that allocates per event: the long-lived heap
    (imports, catalogue) is frozen out of the collector and young objects are collected every
    50,000 allocations instead of 700. Measured in bench/monitor.py: the collector took ~45 % of
    ingest CPU with the defaults, ~3 % after this."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def create_app(settings: MonitorSettings | None = None) -> FastAPI:
    settings = settings or MonitorSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url("monitor"))
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
        lake = InferenceLake(settings.lake_settings()) if settings.lake_enabled else None
        notifier = (
            AlertNotifier(settings.alertmanager_url, generator_url=settings.public_url)
            if settings.alertmanager_url
            else None
        )
        registry_client = (
            RegistryClient(settings.registry_url, app.state.tokens, timeout_s=5.0)
            if settings.registry_url
            else None
        )
        app.state.registry_client = registry_client
        engine = MonitorEngine(
            MonitorStore(db, on_commit=relay.notify),
            settings=settings.engine_settings(),
            lake=lake,
            on_alert=notifier.push if notifier else None,
            lookup=registry_client.version if registry_client else None,
        )
        await engine.load()
        if settings.tune_gc:
            tune_garbage_collector()
        firing: list[Alert] = []
        prometheus.register(
            MonitorCollector(
                engine,
                max_series=settings.max_series,
                firing=firing,
                series=ModelSeriesSelector(
                    ModelSeriesPolicy.parse(settings.metrics_model_series),
                    rank_interval_s=settings.metrics_rank_interval_s,
                ),
            )
        )
        app.state.engine = engine
        app.state.audit_sink = engine.store.record_audit
        app.state.relay = relay
        consumer_metrics = ConsumerMetrics(prometheus)

        consumer = BackgroundConsumer(
            lambda: monitor_consumer(
                settings.kafka_servers,
                engine,
                max_records=settings.ingest_batch,
                max_attempts=settings.dlq_max_attempts,
                metrics=consumer_metrics,
            ),
            enabled=settings.consume_events,
            name="monitor-consumer",
        )

        async def tick() -> None:
            await engine.tick()
            async with engine.store.transaction() as s:
                firing[:] = await engine.store.alerts(s, state="firing", limit=10_000)

        async def flush_lake() -> None:
            if lake is not None and lake.buffered:
                await asyncio.to_thread(lake.flush)

        async def retention() -> None:
            if lake is not None:
                deleted = await asyncio.to_thread(lake.apply_retention)
                if deleted:
                    log.info("lake retention", deleted=len(deleted))

        async def resend_firing() -> None:
            if notifier is not None and firing:
                await notifier.send(list(firing))

        app.state.readiness = [
            ("database", database_check(db)),
            ("outbox", outbox_check(relay)),
            ("consumers", consumer.check),
        ]
        relay.start()
        if notifier is not None:
            notifier.start()
        await retention()
        tasks = [
            asyncio.create_task(run_every("tick", settings.tick_interval_s, tick), name="monitor-tick"),
            asyncio.create_task(
                run_every("lake flush", settings.lake_flush_interval_s, flush_lake), name="monitor-lake"
            ),
            asyncio.create_task(
                run_every("lake retention", RETENTION_EVERY_S, retention), name="monitor-retention"
            ),
            asyncio.create_task(
                run_every("alert resend", RESEND_FIRING_S, resend_firing), name="monitor-resend"
            ),
        ]
        consumer.start()
        try:
            yield
        finally:
            await consumer.stop()
            await cancel_all(tasks)
            if lake is not None:
                try:
                    await asyncio.to_thread(lake.flush)
                except Exception as exc:
                    log.warning("final lake flush failed", error=str(exc))
            if notifier is not None:
                await notifier.stop()
            if registry_client is not None:
                await registry_client.close()
            await relay.stop()
            await db.dispose()

    app = build_app(
        service="monitor",
        title="ModelFleet monitor",
        version=__version__,
        description=DESCRIPTION,
        settings=settings,
        lifespan=lifespan,
        max_body_bytes=2**20,
        openapi_tags=[
            {"name": "models", "description": "The fleet overview, one model in depth, thresholds"},
            {"name": "alerts", "description": "Alerts and their lifecycle"},
            {"name": "lake", "description": "The inference lake: served rows and labels"},
            {"name": "privacy", "description": "Right to erasure: a data subject's rows out of the lake"},
            {"name": "dashboard", "description": "The ops dashboard and its live feed"},
        ],
    )
    app.include_router(api_router)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    return app
