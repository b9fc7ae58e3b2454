"""The monitor's consumer (group ``monitor``): one batch consumer for its seven topics.

``inference.logged`` is the fleet's busiest topic, so whole batches are folded into memory and
then whatever windows closed are settled. ``model.registered`` and ``rollout.updated`` are
idempotent on the event id (inbox); feedback only adds labels to memory and the lake, an outcome
only counts in its arm's sample; ``retrain.completed`` and ``version.checked`` are kept in memory
for the dashboard. One group member for all its topics means a start is a single group join.
"""

from __future__ import annotations

from typing import Any

from fleet_core.broker import BatchConsumer, ConsumerMetrics
from fleet_core.events import CloudEvent, Topic
from fleet_monitor.engine import MonitorEngine

CONSUMER = "monitor"


def monitor_consumer(
    bootstrap_servers: list[str] | str,
    engine: MonitorEngine,
    *,
    max_records: int = 2000,
    max_attempts: int = 3,
    metrics: ConsumerMetrics | None = None,
) -> BatchConsumer:
    """The monitor's consumer (not started)."""

    async def inference_logged(events: list[CloudEvent[Any]]) -> None:
        engine.ingest(event.data for event in events)
        await engine.settle()

    async def feedback(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            engine.ingest_feedback(event.data)
        await engine.settle()

    async def model_registered(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            await engine.on_model_registered(event.id, event.data)

    async def rollout_updated(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            await engine.on_rollout_updated(event.id, event.data)

    async def outcome_recorded(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            engine.ingest_outcome(event.data)

    async def version_checked(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            engine.on_version_checked(event.data)

    async def retrain_completed(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            engine.on_retrain_completed(event.data)

    return BatchConsumer(
        bootstrap_servers,
        {
            Topic.INFERENCE_LOGGED: inference_logged,
            Topic.INFERENCE_FEEDBACK: feedback,
            Topic.MODEL_REGISTERED: model_registered,
            Topic.ROLLOUT_UPDATED: rollout_updated,
            Topic.RETRAIN_COMPLETED: retrain_completed,
            Topic.VERSION_CHECKED: version_checked,
            Topic.OUTCOME_RECORDED: outcome_recorded,
        },
        consumer=CONSUMER,
        max_records=max_records,
        max_attempts=max_attempts,
        metrics=metrics,
    )
