"""The deployer's consumers (group ``deployer``): each decodes nothing itself and delegates.

``rollout.analysis`` and ``anomaly.detected`` drive progressive rollouts; applying one twice
changes nothing (a verdict is stored for its step; a rollout rolls back once), so they need no
inbox row.

``model.registered`` and ``rollout.requested`` are idempotent on the event id (inbox claim in the
controller). ``inference.logged`` arrives for every request, so it only moves a timestamp in
memory (applying it twice changes nothing, so it needs no inbox row).
"""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker

from fleet_core.broker import ConsumerMetrics, make_broker, subscribe
from fleet_core.events import (
    AnomalyDetected,
    CloudEvent,
    InferenceLogged,
    ModelRegistered,
    RolloutAnalysis,
    RolloutRequested,
    Topic,
)
from fleet_deployer.controller import DeploymentController

CONSUMER = "deployer"


def deployer_broker(
    bootstrap_servers: list[str] | str,
    controller: DeploymentController,
    *,
    max_attempts: int = 3,
    metrics: ConsumerMetrics | None = None,
    **broker_kwargs: Any,
) -> KafkaBroker:
    """A broker with the deployer's three subscribers registered (not started)."""
    broker = make_broker(bootstrap_servers, **broker_kwargs)

    async def model_registered(event: CloudEvent[ModelRegistered]) -> None:
        await controller.on_model_registered(event.id, event.data)

    async def rollout_requested(event: CloudEvent[RolloutRequested]) -> None:
        await controller.on_rollout_requested(event.id, event.data)

    async def inference_logged(event: CloudEvent[InferenceLogged]) -> None:
        await controller.on_inference_logged(event.data.model, event.data.version, event.data.timestamp)

    async def rollout_analysis(event: CloudEvent[RolloutAnalysis]) -> None:
        await controller.on_rollout_analysis(event.data)

    async def anomaly_detected(event: CloudEvent[AnomalyDetected]) -> None:
        await controller.on_anomaly_detected(event.data)

    for topic, handler in (
        (Topic.MODEL_REGISTERED, model_registered),
        (Topic.ROLLOUT_REQUESTED, rollout_requested),
        (Topic.INFERENCE_LOGGED, inference_logged),
        (Topic.ROLLOUT_ANALYSIS, rollout_analysis),
        (Topic.ANOMALY_DETECTED, anomaly_detected),
    ):
        subscribe(broker, topic, handler, consumer=CONSUMER, max_attempts=max_attempts, metrics=metrics)
    return broker
