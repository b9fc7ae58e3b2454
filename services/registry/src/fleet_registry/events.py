"""The registry's consumer (group ``registry``): other services' ``audit.recorded`` entries join
the platform's audit log. Idempotent on the event id (inbox claim in the store)."""

from __future__ import annotations

from typing import Any

from fleet_core.broker import BatchConsumer, ConsumerMetrics
from fleet_core.events import CloudEvent, Topic
from fleet_registry.store import AUDIT_CONSUMER, RegistryStore


def audit_consumer(
    bootstrap_servers: list[str] | str,
    store: RegistryStore,
    *,
    max_attempts: int = 3,
    metrics: ConsumerMetrics | None = None,
) -> BatchConsumer:
    async def audit_recorded(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            await store.add_audit_entry(event.data, event_id=event.id)

    return BatchConsumer(
        bootstrap_servers,
        {Topic.AUDIT_RECORDED: audit_recorded},
        consumer=AUDIT_CONSUMER,
        max_records=500,
        max_attempts=max_attempts,
        metrics=metrics,
    )
