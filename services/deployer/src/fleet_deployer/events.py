"""The deployer's consumers (group ``deployer``): each decodes nothing itself and delegates.

``model.registered`` and ``rollout.requested`` are idempotent on the event id (inbox claim in the
controller). ``inference.logged`` arrives for every request, so it only moves a timestamp in
memory (applying it twice changes nothing, so it needs no inbox row).
"""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker

from fleet_core.broker import ConsumerMetrics, make_broker, subscribe
from fleet_core.events import CloudEvent, InferenceLogged, ModelRegistered, RolloutRequested, Topic
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

    for topic, handler in (
        (Topic.MODEL_REGISTERED, model_registered),
        (Topic.ROLLOUT_REQUESTED, rollout_requested),
        (Topic.INFERENCE_LOGGED, inference_logged),
    ):
        subscribe(broker, topic, handler, consumer=CONSUMER, max_attempts=max_attempts, metrics=metrics)
    return broker
