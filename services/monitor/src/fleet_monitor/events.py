"""The monitor's consumers (group ``monitor``).

``inference.logged`` is the fleet's busiest topic, so it has a batch consumer that folds whole
batches into memory and then settles whatever windows closed. The other three topics are low
volume and use the ordinary typed subscribers; ``model.registered`` and ``rollout.updated`` are
idempotent on the event id (inbox), feedback only adds labels to memory and the lake.
"""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker

from fleet_core.broker import BatchConsumer, ConsumerMetrics, make_broker, subscribe
from fleet_core.events import CloudEvent, InferenceFeedback, ModelRegistered, RolloutUpdated, Topic
from fleet_monitor.engine import MonitorEngine

CONSUMER = "monitor"


def monitor_broker(
    bootstrap_servers: list[str] | str,
    engine: MonitorEngine,
    *,
    max_attempts: int = 3,
    metrics: ConsumerMetrics | None = None,
    **broker_kwargs: Any,
) -> KafkaBroker:
    """A broker with the three low-volume subscribers registered (not started)."""
    broker = make_broker(bootstrap_servers, **broker_kwargs)

    async def model_registered(event: CloudEvent[ModelRegistered]) -> None:
        await engine.on_model_registered(event.id, event.data)

    async def rollout_updated(event: CloudEvent[RolloutUpdated]) -> None:
        await engine.on_rollout_updated(event.id, event.data)

    async def feedback(event: CloudEvent[InferenceFeedback]) -> None:
        engine.ingest_feedback(event.data)
        await engine.settle()

    for topic, handler in (
        (Topic.MODEL_REGISTERED, model_registered),
        (Topic.ROLLOUT_UPDATED, rollout_updated),
        (Topic.INFERENCE_FEEDBACK, feedback),
    ):
        subscribe(broker, topic, handler, consumer=CONSUMER, max_attempts=max_attempts, metrics=metrics)
    return broker


def inference_consumer(
    bootstrap_servers: list[str] | str,
    engine: MonitorEngine,
    *,
    max_records: int = 2000,
    max_attempts: int = 3,
    metrics: ConsumerMetrics | None = None,
) -> BatchConsumer:
    """The batch consumer of ``inference.logged`` (not started)."""

    async def handle(events: list[CloudEvent[Any]]) -> None:
        engine.ingest(event.data for event in events)
        await engine.settle()

    return BatchConsumer(
        bootstrap_servers,
        Topic.INFERENCE_LOGGED,
        handle,
        consumer=CONSUMER,
        max_records=max_records,
        max_attempts=max_attempts,
        metrics=metrics,
    )
