"""The registry's FastAPI app: wiring, lifespan (database, migrations, artifact store, outbox relay,
the consumer of other services' audit entries and of the events webhooks deliver, the webhook
sender)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from fleet_core.artifacts import artifact_store
from fleet_core.broker import ConsumerMetrics
from fleet_core.db import Database
from fleet_core.events import AuditRecorded
from fleet_core.outbox import OutboxMetrics, OutboxRelay
from fleet_core.service import BackgroundConsumer, build_app, database_check, outbox_check
from fleet_registry import __version__
from fleet_registry.api.main import api_router
from fleet_registry.delivery import Delivery
from fleet_registry.events import registry_consumer
from fleet_registry.models import MESSAGING
from fleet_registry.settings import RegistrySettings
from fleet_registry.store import RegistryStore
from fleet_registry.webhooks import WebhookMetrics, WebhookSender, WebhookStore

MIGRATIONS = Path(__file__).parent / "migrations"

DESCRIPTION = """\
The ModelFleet registry: models, immutable versions with their artifacts (sha256-verified),
signatures, metrics, recipes and reference profiles; aliases; datasets and their content-hashed
versions; lineage; the audit log; and bearer-token issuance.

Every error is RFC 9457 `application/problem+json` naming the field or reason.
Authenticate with `Authorization: Bearer <token>` (`fleet tokens issue`).
"""


def create_app(settings: RegistrySettings | None = None) -> FastAPI:
    settings = settings or RegistrySettings()
    # Outside embedded mode a serving registry without the salt would have to store raw PII: refuse to start.
    pii_hasher = settings.pii_hasher()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url("registry"))
        if settings.run_migrations:
            await db.migrate(MIGRATIONS)
        relay = OutboxRelay(
            db.sessions,
            MESSAGING.outbox,
            settings.kafka_servers,
            poll_interval_s=settings.outbox_poll_interval_s,
            metrics=OutboxMetrics(app.state.metrics.registry),
        )
        app.state.db = db
        app.state.relay = relay
        app.state.store = RegistryStore(db, on_commit=relay.notify, pii_hasher=pii_hasher)
        app.state.delivery = Delivery(db, on_commit=relay.notify)
        # The registry owns the token records: it follows its own revocation list, from its database.
        app.state.revocation_source = app.state.store.revoked_token_ids
        app.state.artifacts = artifact_store(settings.resolved_artifact_uri(), settings)

        store: RegistryStore = app.state.store

        async def audit_refusal(entry: AuditRecorded) -> None:
            await store.add_audit_entry(entry)

        app.state.audit_sink = audit_refusal
        webhooks = WebhookStore(
            db, allowed_hosts=settings.webhook_allowed_hosts, on_queued=lambda: sender.notify()
        )
        sender = WebhookSender(
            webhooks,
            max_attempts=settings.webhook_max_attempts,
            retry_base_s=settings.webhook_retry_base_s,
            timeout_s=settings.webhook_timeout_s,
            metrics=WebhookMetrics(app.state.metrics.registry),
        )
        app.state.webhooks = webhooks
        app.state.webhook_sender = sender

        consumer = BackgroundConsumer(
            lambda: registry_consumer(
                settings.kafka_servers,
                store,
                webhooks,
                max_attempts=settings.dlq_max_attempts,
                metrics=ConsumerMetrics(app.state.metrics.registry),
            ),
            enabled=settings.consume_events,
            name="registry-consumer",
        )

        async def audit_consumer_check() -> tuple[bool, str]:
            # Reported, never gating: the registry serves (and stages its events) without Kafka;
            # other services' audit entries wait in their outboxes until the consumer runs.
            _, detail = await consumer.check()
            return True, f"audit consumer {detail}"

        app.state.readiness = [
            ("database", database_check(db)),
            ("outbox", outbox_check(relay)),
            ("consumers", audit_consumer_check),
        ]
        relay.start()
        consumer.start()
        sender.start()
        try:
            yield
        finally:
            await sender.stop()
            await consumer.stop()
            await relay.stop()
            await db.dispose()

    app = build_app(
        service="registry",
        title="ModelFleet registry",
        version=__version__,
        description=DESCRIPTION,
        settings=settings,
        lifespan=lifespan,
        max_body_bytes=max(settings.max_artifact_bytes, settings.max_dataset_bytes) + 2**20,
        openapi_tags=[
            {"name": "models", "description": "Models, archived never deleted; aliases"},
            {"name": "versions", "description": "Immutable versions and their artifacts"},
            {"name": "datasets", "description": "Datasets and content-hashed versions"},
            {"name": "admin", "description": "Audit log and token issuance"},
            {"name": "webhooks", "description": "Events delivered to other systems over HTTP, per team"},
        ],
    )
    app.include_router(api_router)
    return app
