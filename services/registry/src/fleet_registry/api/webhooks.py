"""/v1/webhooks: a team's subscriptions of outside HTTP endpoints to its events, and their deliveries."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status

from fleet_registry.api.deps import CurrentPrincipal, Limit, Offset
from fleet_registry.webhooks import (
    DeliveryPage,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookDelivery,
    WebhookStore,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def _store(request: Request) -> WebhookStore:
    return request.app.state.webhooks  # type: ignore[no-any-return]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Subscribe an HTTP endpoint to a team's events (deployer of the team)",
    description="The answer carries the signing secret (Standard Webhooks, `whsec_...`) once. The URL's "
    "host must be in `FLEET_WEBHOOK_ALLOWED_HOSTS`; `events` are topic names such as `model.registered`, "
    "`rollout.updated`, `drift.detected`.",
)
async def create_webhook(body: WebhookCreate, request: Request, who: CurrentPrincipal) -> WebhookCreated:
    return await _store(request).create(who, body)


@router.get("", summary="List webhooks (your teams'; secrets are never shown)")
async def list_webhooks(
    request: Request,
    who: CurrentPrincipal,
    team: Annotated[str | None, Query(max_length=100, description="Only this team's webhooks")] = None,
) -> list[Webhook]:
    return await _store(request).list(who, team=team)


@router.get("/{webhook_id}", summary="Show a webhook")
async def get_webhook(webhook_id: str, request: Request, who: CurrentPrincipal) -> Webhook:
    return await _store(request).get(who, webhook_id)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a webhook")
async def delete_webhook(webhook_id: str, request: Request, who: CurrentPrincipal) -> Response:
    await _store(request).delete(who, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{webhook_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Queue a signed `io.modelfleet.webhook.test.v1` event for the webhook",
)
async def test_webhook(webhook_id: str, request: Request, who: CurrentPrincipal) -> WebhookDelivery:
    return await _store(request).queue_test(who, webhook_id)


@router.get("/{webhook_id}/deliveries", summary="The webhook's deliveries, newest first (paginated)")
async def list_deliveries(
    webhook_id: str,
    request: Request,
    who: CurrentPrincipal,
    state: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> DeliveryPage:
    return await _store(request).deliveries(who, webhook_id, state=state, limit=limit, offset=offset)
