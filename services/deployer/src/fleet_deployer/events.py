"""The deployer's consumer (group ``deployer``): one batch consumer for its six topics, each
handler delegating event by event to the controller (one group member, so a start is one join).

Events are notifications, the registry is the truth: ``model.registered`` is acted on only once the
registry confirms that version (its team, artifact, sha256, deploy policy and quota, not the
event's); one the registry contradicts or does not know is dead-lettered with the reason.
``version.checked`` (a gated version's delivery state) starts a canary only once the registry
says the version is ``ready`` too. ``rollout.requested`` must carry a bearer token in the
``fleetauth`` extension attribute, checked like the REST API's (deployer role on the model's
team); without one, or with a bad one, it is dead-lettered with the reason, whatever its ``source``.

A batch of ``model.registered`` events (a bulk onboarding) is recorded in one transaction and
deployed with one pool reconfiguration for all its pool-placed versions; the deploying runs in the
background, so the next batch is fetched and recorded meanwhile (a recorded rollout is durable, and
``reconcile`` resumes one a crash interrupts).

``model.registered`` and ``rollout.requested`` are idempotent on the event id (inbox claim in the
controller). ``inference.logged`` arrives for every request, so it only moves a timestamp in
memory (applying it twice changes nothing, so it needs no inbox row). ``rollout.analysis`` and
``anomaly.detected`` drive progressive rollouts; applying one twice changes nothing either (a
verdict is stored for its step; a rollout rolls back once).
"""

from __future__ import annotations

from typing import Any

from fleet_core.auth import Principal, TokenAuthority
from fleet_core.broker import BatchConsumer, ConsumerMetrics
from fleet_core.errors import Unauthorized
from fleet_core.events import AUTH_EXTENSION, CloudEvent, Topic
from fleet_deployer.controller import DeploymentController

CONSUMER = "deployer"


def event_principal(event: CloudEvent[Any], tokens: TokenAuthority) -> Principal:
    """Who an event speaks for: the bearer token in its ``fleetauth`` extension, verified."""
    token = event.fleetauth
    if not token:
        raise Unauthorized(
            f"{event.type} {event.id} from {event.source} carries no bearer token in its "
            f"'{AUTH_EXTENSION}' extension attribute; not acted on"
        )
    try:
        return tokens.verify(token)
    except Unauthorized as exc:
        raise Unauthorized(
            f"{event.type} {event.id} from {event.source}: {exc.detail}; not acted on"
        ) from exc


def deployer_consumer(
    bootstrap_servers: list[str] | str,
    controller: DeploymentController,
    tokens: TokenAuthority,
    *,
    max_attempts: int = 3,
    metrics: ConsumerMetrics | None = None,
) -> BatchConsumer:
    """The deployer's consumer (not started)."""

    async def model_registered(events: list[CloudEvent[Any]]) -> None:
        # One pool reconfiguration for the whole batch, not one per version; the batch is recorded
        # before this returns (its offsets are committed after), and deployed in the background
        # while the next batch is fetched.
        await controller.on_models_registered([(event.id, event.data) for event in events], wait=False)

    async def version_checked(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            await controller.on_version_checked(event.id, event.data)

    async def rollout_requested(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            if await controller.handled(event.id):
                continue  # a redelivery: its token may have expired since, and nothing is left to do
            await controller.on_rollout_event(event.id, event.data, event_principal(event, tokens))

    async def inference_logged(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            await controller.on_inference_logged(event.data.model, event.data.version, event.data.timestamp)

    async def rollout_analysis(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            await controller.on_rollout_analysis(event.data)

    async def anomaly_detected(events: list[CloudEvent[Any]]) -> None:
        for event in events:
            await controller.on_anomaly_detected(event.data)

    return BatchConsumer(
        bootstrap_servers,
        {
            Topic.MODEL_REGISTERED: model_registered,
            Topic.VERSION_CHECKED: version_checked,
            Topic.ROLLOUT_REQUESTED: rollout_requested,
            Topic.INFERENCE_LOGGED: inference_logged,
            Topic.ROLLOUT_ANALYSIS: rollout_analysis,
            Topic.ANOMALY_DETECTED: anomaly_detected,
        },
        consumer=CONSUMER,
        max_records=500,
        max_attempts=max_attempts,
        metrics=metrics,
    )
