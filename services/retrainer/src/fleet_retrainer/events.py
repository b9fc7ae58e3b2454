"""The retrainer's consumer (group ``retrainer``): drift, explicit requests and new datasets become
retraining triggers (idempotent on the event id: inbox claim in the controller); a gated version's
``model.registered`` runs its delivery checks (``fleet_retrainer.checks``; a version already
checked is skipped, so a redelivery checks nothing twice)."""

from __future__ import annotations

from typing import Any

from fleet_core.broker import BatchConsumer, ConsumerMetrics
from fleet_core.events import CloudEvent, Topic
from fleet_retrainer.checks import VersionChecker
from fleet_retrainer.engine import RetrainController

CONSUMER = "retrainer"


def retrainer_consumer(
    bootstrap_servers: list[str] | str,
    controller: RetrainController,
    checker: VersionChecker | None = None,
    *,
    max_attempts: int = 3,
    metrics: ConsumerMetrics | None = None,
) -> BatchConsumer:
    async def drift_detected(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            await controller.on_trigger(
                event.data.model,
                "drift",
                requested_by=f"monitor ({event.data.kind} drift)",
                event_id=event.id,
                topic=Topic.DRIFT_DETECTED,
                version=event.data.version,
            )

    async def retrain_requested(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            await controller.on_trigger(
                event.data.model,
                event.data.reason,
                requested_by=event.data.requested_by,
                event_id=event.id,
                topic=Topic.RETRAIN_REQUESTED,
            )

    async def dataset_updated(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            for model in event.data.models:
                await controller.on_trigger(
                    model,
                    "dataset",
                    requested_by=f"dataset {event.data.dataset} v{event.data.version}",
                    event_id=f"{event.id}:{model}",
                    topic=Topic.DATASET_UPDATED,
                    dataset=(event.data.dataset, event.data.version),
                )

    async def model_registered(events: list[CloudEvent[Any]]) -> None:
        if checker is None:
            return
        for event in events:
            # The event's policy only says whether to look: the checker re-reads the version.
            if event.data.deploy_policy == "gated":
                await checker.check(event.data.model, event.data.version)

    return BatchConsumer(
        bootstrap_servers,
        {
            Topic.DRIFT_DETECTED: drift_detected,
            Topic.RETRAIN_REQUESTED: retrain_requested,
            Topic.DATASET_UPDATED: dataset_updated,
            Topic.MODEL_REGISTERED: model_registered,
        },
        consumer=CONSUMER,
        max_records=100,
        max_attempts=max_attempts,
        metrics=metrics,
    )
