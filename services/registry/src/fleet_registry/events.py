"""The registry's consumer (group ``registry``): other services' ``audit.recorded`` entries join
the platform's audit log (idempotent on the event id: inbox claim in the store), and the events
webhooks may subscribe to (``fleet_core.topics.WEBHOOK_TOPICS``) become deliveries for the
webhooks of the team that owns their model (queued once per webhook and event id)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fleet_core.broker import BatchConsumer, ConsumerMetrics
from fleet_core.events import CloudEvent, Topic
from fleet_core.topics import WEBHOOK_TOPICS
from fleet_registry.store import AUDIT_CONSUMER, RegistryStore
from fleet_registry.webhooks import WebhookStore


def registry_consumer(
    bootstrap_servers: list[str] | str,
    store: RegistryStore,
    webhooks: WebhookStore,
    *,
    max_attempts: int = 3,
    metrics: ConsumerMetrics | None = None,
) -> BatchConsumer:
    async def audit_recorded(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            await store.add_audit_entry(event.data, event_id=event.id)

    def deliveries(topic: Topic) -> Callable[[list[CloudEvent[Any]]], Awaitable[None]]:
        async def queue(events: list[CloudEvent[Any]]) -> None:
            await webhooks.queue_events(topic, events)

        return queue

    return BatchConsumer(
        bootstrap_servers,
        {Topic.AUDIT_RECORDED: audit_recorded, **{topic: deliveries(topic) for topic in WEBHOOK_TOPICS}},
        consumer=AUDIT_CONSUMER,
        max_records=500,
        max_attempts=max_attempts,
        metrics=metrics,
    )
