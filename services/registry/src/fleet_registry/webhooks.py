"""Webhooks: the platform's events delivered to other systems over HTTP, per team.

A team subscribes an HTTPS (or, on an allowed host, HTTP) endpoint to some topics
(``WEBHOOK_TOPICS``). The registry's consumer (``fleet_registry.events``) reads those topics; for each
event it finds the team that owns the event's model (or dataset) in its own tables, never in the
event, and queues one delivery per matching webhook (unique per webhook and event id, so a
redelivered event is queued once). ``WebhookSender`` posts each due delivery: the CloudEvent in
structured mode (``application/cloudevents+json``, any ``fleetauth`` token removed), signed as the
Standard Webhooks specification says (``webhook-id``, ``webhook-timestamp``, ``webhook-signature:
v1,<base64 HMAC-SHA256 of "id.timestamp.body">``), so receivers verify it with any Standard Webhooks
library. A 2xx answer delivers it; anything else is retried with doubling backoff until
``max_attempts``, then the delivery is ``failed``. Every attempt's outcome is kept
(``GET /v1/webhooks/{id}/deliveries``).

A webhook's URL must name an allowed host (``FLEET_WEBHOOK_ALLOWED_HOSTS``), checked when it is
created and again before every attempt: the registry makes the call, so an open list would let a
deployer aim it at the cluster's own services.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from standardwebhooks import Webhook as Signer

from fleet_core.auth import Principal, Role
from fleet_core.db import Database
from fleet_core.errors import InvalidInput, NotFound
from fleet_core.events import CloudEvent, Topic
from fleet_core.log import get_logger
from fleet_core.topics import WEBHOOK_TOPICS
from fleet_registry.models import DatasetRow, ModelRow, WebhookDeliveryRow, WebhookRow
from fleet_registry.store import audit_row

log = get_logger(__name__)

TEST_EVENT_TYPE = "io.modelfleet.webhook.test.v1"
MAX_BACKOFF_S = 600.0
MAX_ERROR_CHARS = 500


# ---------------------------------------------------------------------- contracts


class WebhookCreate(BaseModel):
    model_config = {"extra": "forbid"}

    team: str = Field(min_length=1, max_length=100)
    url: str = Field(min_length=1, max_length=2000, description="Where events are posted")
    events: list[str] = Field(min_length=1, max_length=len(WEBHOOK_TOPICS), description="Topic names")
    description: str | None = Field(default=None, max_length=2000)


class Webhook(BaseModel):
    id: str
    team: str
    url: str
    events: list[str]
    description: str | None
    created_at: datetime
    created_by: str


class WebhookCreated(Webhook):
    secret: str = Field(description="The signing secret (Standard Webhooks, whsec_...); shown only now")


class WebhookDelivery(BaseModel):
    id: int
    webhook_id: str
    event_id: str
    topic: str
    state: str = Field(description="pending, delivered or failed")
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    items: list[WebhookDelivery]
    total: int
    limit: int
    offset: int


def check_url(url: str, allowed_hosts: list[str], field: str = "url") -> str:
    """``url`` if it is http(s) to an allowed host, else InvalidInput naming ``field``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{field}: an http:// or https:// URL with a host is required", field=field)
    if parts.username or parts.password:
        raise InvalidInput(f"{field}: credentials in the URL are not accepted", field=field)
    host = parts.hostname.lower()
    for allowed in allowed_hosts:
        allowed = allowed.lower()
        if host == allowed or (allowed.startswith("*.") and host.endswith(allowed[1:])):
            return url
    raise InvalidInput(
        f"{field}: host {host!r} is not in FLEET_WEBHOOK_ALLOWED_HOSTS ({', '.join(allowed_hosts)})",
        field=field,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _audit(s: Any, actor: Principal, action: str, row: WebhookRow) -> None:
    s.add(audit_row(actor, action, f"webhooks/{row.id}", team=row.team, url=row.url, events=list(row.events)))


def _webhook(row: WebhookRow) -> Webhook:
    return Webhook(
        id=row.id,
        team=row.team,
        url=row.url,
        events=list(row.events),
        description=row.description,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _delivery(row: WebhookDeliveryRow) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id,
        webhook_id=row.webhook_id,
        event_id=row.event_id,
        topic=row.topic,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if row.state == "pending" else None,
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


def delivered_payload(event: CloudEvent[Any]) -> dict[str, Any]:
    """The event as a webhook receives it: structured-mode JSON without the ``fleetauth`` token."""
    body: dict[str, Any] = json.loads(event.model_dump_json(exclude_none=True))
    body.pop("fleetauth", None)
    return body


# ---------------------------------------------------------------------- persistence


class WebhookStore:
    """Subscriptions and deliveries; every method that acts for a caller checks role and team."""

    def __init__(
        self, db: Database, *, allowed_hosts: list[str], on_queued: Callable[[], None] | None = None
    ):
        self.db = db
        self.allowed_hosts = allowed_hosts
        self._on_queued = on_queued or (lambda: None)

    async def create(self, actor: Principal, data: WebhookCreate) -> WebhookCreated:
        actor.require(Role.DEPLOYER, data.team)
        known = {t.value for t in WEBHOOK_TOPICS}
        unknown = [e for e in data.events if e not in known]
        if unknown:
            raise InvalidInput(
                f"events: {', '.join(unknown)} cannot be subscribed to; one of {', '.join(sorted(known))}",
                field="events",
            )
        check_url(data.url, self.allowed_hosts)
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        row = WebhookRow(
            id=str(uuid.uuid4()),
            team=data.team,
            url=data.url,
            events=sorted(set(data.events)),
            secret=secret,
            description=data.description,
            created_at=_now(),
            created_by=actor.subject,
        )
        async with self.db.transaction() as s:
            s.add(row)
            await s.flush()
            _audit(s, actor, "webhook.create", row)
        return WebhookCreated(**_webhook(row).model_dump(), secret=secret)

    async def _row(self, s: Any, actor: Principal, webhook_id: str, role: Role) -> WebhookRow:
        row = await s.get(WebhookRow, webhook_id)
        if row is None:
            raise NotFound(f"no webhook {webhook_id}", field="webhook_id")
        actor.require(role, row.team)
        return row  # type: ignore[no-any-return]

    async def get(self, actor: Principal, webhook_id: str) -> Webhook:
        async with self.db.transaction() as s:
            return _webhook(await self._row(s, actor, webhook_id, Role.VIEWER))

    async def list(self, actor: Principal, *, team: str | None = None) -> list[Webhook]:
        actor.require_role(Role.VIEWER)
        query = select(WebhookRow).order_by(WebhookRow.created_at)
        if team is not None:
            query = query.where(WebhookRow.team == team)
        if not actor.sees_all_teams:
            query = query.where(WebhookRow.team.in_(actor.teams))
        async with self.db.transaction() as s:
            return [_webhook(r) for r in (await s.scalars(query)).all()]

    async def delete(self, actor: Principal, webhook_id: str) -> None:
        async with self.db.transaction() as s:
            row = await self._row(s, actor, webhook_id, Role.DEPLOYER)
            _audit(s, actor, "webhook.delete", row)
            await s.delete(row)

    async def deliveries(
        self, actor: Principal, webhook_id: str, *, state: str | None, limit: int, offset: int
    ) -> DeliveryPage:
        async with self.db.transaction() as s:
            await self._row(s, actor, webhook_id, Role.VIEWER)
            where = [WebhookDeliveryRow.webhook_id == webhook_id]
            if state is not None:
                where.append(WebhookDeliveryRow.state == state)
            total = await s.scalar(select(func.count()).select_from(WebhookDeliveryRow).where(*where))
            rows = await s.scalars(
                select(WebhookDeliveryRow)
                .where(*where)
                .order_by(WebhookDeliveryRow.id.desc())
                .limit(limit)
                .offset(offset)
            )
            return DeliveryPage(
                items=[_delivery(r) for r in rows], total=total or 0, limit=limit, offset=offset
            )

    async def queue_test(self, actor: Principal, webhook_id: str) -> WebhookDelivery:
        """A ``webhook.test`` event for one webhook, queued like any other delivery."""
        async with self.db.transaction() as s:
            row = await self._row(s, actor, webhook_id, Role.DEPLOYER)
            event_id = str(uuid.uuid4())
            payload = {
                "specversion": "1.0",
                "id": event_id,
                "type": TEST_EVENT_TYPE,
                "source": "/registry/webhooks",
                "time": _now().isoformat(),
                "subject": row.team,
                "datacontenttype": "application/json",
                "data": {"webhook_id": row.id, "requested_by": actor.subject},
            }
            delivery = WebhookDeliveryRow(
                webhook_id=row.id,
                event_id=event_id,
                topic="webhook.test",
                payload=payload,
                state="pending",
                attempts=0,
                next_attempt_at=_now(),
                created_at=_now(),
            )
            s.add(delivery)
            await s.flush()
            answer = _delivery(delivery)
        self._on_queued()
        return answer

    async def _team_of(self, s: Any, topic: Topic, event: CloudEvent[Any]) -> str | None:
        if topic is Topic.DATASET_UPDATED:
            return await s.scalar(select(DatasetRow.team).where(DatasetRow.name == event.data.dataset))
        model = getattr(event.data, "model", None)
        if model is None:
            return None
        return await s.scalar(select(ModelRow.team).where(ModelRow.name == model))

    async def queue_events(self, topic: Topic, events: list[CloudEvent[Any]]) -> int:
        """One pending delivery per (event, webhook of the event's team subscribed to ``topic``);
        an event already queued for a webhook is skipped. Returns how many were queued."""
        queued = 0
        async with self.db.transaction() as s:
            hooks = (await s.scalars(select(WebhookRow))).all()
            subscribed = [h for h in hooks if topic.value in h.events]
            if not subscribed:
                return 0
            for event in events:
                team = await self._team_of(s, topic, event)
                if team is None:  # a model or dataset the registry does not know: no one's to tell
                    continue
                payload = delivered_payload(event)
                for hook in (h for h in subscribed if h.team == team):
                    exists = await s.scalar(
                        select(WebhookDeliveryRow.id).where(
                            WebhookDeliveryRow.webhook_id == hook.id, WebhookDeliveryRow.event_id == event.id
                        )
                    )
                    if exists is not None:
                        continue
                    s.add(
                        WebhookDeliveryRow(
                            webhook_id=hook.id,
                            event_id=event.id,
                            topic=topic.value,
                            payload=payload,
                            state="pending",
                            attempts=0,
                            next_attempt_at=_now(),
                            created_at=_now(),
                        )
                    )
                    queued += 1
            # Two registry replicas queueing one event at once: the unique (webhook, event) key
            # refuses the second, its batch is retried and then finds the delivery queued.
            await s.flush()
        if queued:
            self._on_queued()
        return queued

    async def due(self, limit: int) -> list[tuple[WebhookDeliveryRow, WebhookRow]]:
        async with self.db.transaction() as s:
            rows = (
                await s.execute(
                    select(WebhookDeliveryRow, WebhookRow)
                    .join(WebhookRow, WebhookRow.id == WebhookDeliveryRow.webhook_id)
                    .where(
                        WebhookDeliveryRow.state == "pending", WebhookDeliveryRow.next_attempt_at <= _now()
                    )
                    .order_by(WebhookDeliveryRow.next_attempt_at)
                    .limit(limit)
                )
            ).all()
            return [(d, h) for d, h in rows]

    async def record(
        self,
        delivery_id: int,
        *,
        ok: bool,
        status: int | None,
        error: str | None,
        max_attempts: int,
        base_s: float,
    ) -> None:
        async with self.db.transaction() as s:
            row = await s.get(WebhookDeliveryRow, delivery_id)
            if row is None:  # its webhook was deleted meanwhile
                return
            row.attempts += 1
            row.last_status = status
            row.last_error = error[:MAX_ERROR_CHARS] if error else None
            if ok:
                row.state, row.delivered_at = "delivered", _now()
            elif row.attempts >= max_attempts:
                row.state = "failed"
            else:
                backoff = min(base_s * 2 ** (row.attempts - 1), MAX_BACKOFF_S)
                row.next_attempt_at = _now() + timedelta(seconds=backoff)


# ---------------------------------------------------------------------- delivery


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "fleet_webhook_attempts",
            "Webhook delivery attempts by outcome (delivered, retry, failed, refused)",
            ["outcome"],
            registry=registry,
        )


class WebhookSender:
    """Posts due deliveries, a few at a time, and records each attempt."""

    def __init__(
        self,
        store: WebhookStore,
        *,
        max_attempts: int,
        retry_base_s: float,
        timeout_s: float,
        metrics: WebhookMetrics | None = None,
        poll_s: float = 1.0,
        batch: int = 20,
    ) -> None:
        self.store = store
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.poll_s = poll_s
        self.batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        self._task = asyncio.create_task(self._run(), name="webhook-sender")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._http is not None:
            await self._http.aclose()

    async def _run(self) -> None:
        while True:
            try:
                await self.send_due()
            except Exception as exc:  # a database blip: the deliveries stay pending, tried next round
                log.warning("webhook delivery round failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()

    async def send_due(self) -> int:
        """One round: every due delivery (up to ``batch``) attempted once, concurrently."""
        due = await self.store.due(self.batch)
        await asyncio.gather(*(self._attempt(d, h) for d, h in due))
        return len(due)

    async def _attempt(self, delivery: WebhookDeliveryRow, hook: WebhookRow) -> None:
        assert self._http is not None, "start() first"
        status: int | None = None
        error: str | None = None
        try:
            check_url(hook.url, self.store.allowed_hosts)
        except InvalidInput as exc:  # the allow-list changed after the webhook was created
            await self.store.record(
                delivery.id, ok=False, status=None, error=exc.detail, max_attempts=1, base_s=self.retry_base_s
            )
            self._count("refused")
            return
        body = json.dumps(delivery.payload, separators=(",", ":"))
        at = _now()
        headers = {
            "content-type": "application/cloudevents+json",
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Signer(hook.secret).sign(delivery.event_id, at, body),
            "user-agent": "ModelFleet-Webhooks/1",
        }
        try:
            response = await self._http.post(hook.url, content=body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = error is None
        await self.store.record(
            delivery.id,
            ok=ok,
            status=status,
            error=error,
            max_attempts=self.max_attempts,
            base_s=self.retry_base_s,
        )
        if ok:
            self._count("delivered")
        else:
            last = delivery.attempts + 1 >= self.max_attempts
            self._count("failed" if last else "retry")
            log.info("webhook delivery failed", webhook=hook.id, event=delivery.event_id, error=error)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.attempts.labels(outcome).inc()
