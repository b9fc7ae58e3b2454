"""Pushes alert changes to Alertmanager (``POST /api/v2/alerts``), best effort and off the hot path.

Alertmanager expects a firing alert to be re-sent until it resolves (it expires alerts it has not
heard of for ``resolve_timeout``), so the notifier re-sends every firing alert periodically and
sends a resolved alert with its ``endsAt`` once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx

from fleet_core.log import get_logger
from fleet_monitor.entities import Alert

log = get_logger(__name__)


def alertmanager_payload(alert: Alert, *, generator_url: str) -> dict[str, Any]:
    labels = {
        "alertname": f"Fleet{''.join(part.title() for part in alert.name.split('_'))}",
        "kind": alert.kind,
        "model": alert.model,
        "severity": alert.severity,
        "service": "fleet-monitor",
    }
    if alert.version is not None:
        labels["version"] = str(alert.version)
    if "arm" in alert.details:
        labels["arm"] = str(alert.details["arm"])
    body: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": alert.summary, "alert_id": str(alert.id)},
        "startsAt": alert.started_at.isoformat(),
        "generatorURL": f"{generator_url.rstrip('/')}/#/models/{alert.model}",
    }
    if alert.resolved_at is not None:
        body["endsAt"] = alert.resolved_at.isoformat()
    return body


class AlertNotifier:
    """A queue of alert changes and a task that posts them."""

    def __init__(
        self, url: str, *, generator_url: str, timeout_s: float = 5.0, max_queue: int = 10_000
    ) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.generator_url = generator_url
        self._client = httpx.AsyncClient(timeout=timeout_s)
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(max_queue)
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0

    def push(self, alert: Alert) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(alert)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alertmanager-notifier")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    async def send(self, alerts: list[Alert]) -> bool:
        payload = [alertmanager_payload(a, generator_url=self.generator_url) for a in alerts]
        try:
            response = await self._client.post(self.url, json=payload)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            self.failed += len(alerts)
            log.warning("alertmanager push failed", url=self.url, error=str(exc))
            return False
        self.sent += len(alerts)
        return True

    async def _run(self) -> None:
        while True:
            alert = await self._queue.get()
            batch = [alert]
            while not self._queue.empty() and len(batch) < 100:
                batch.append(self._queue.get_nowait())
            backoff = 1.0
            while not await self.send(batch) and backoff <= 30:
                await asyncio.sleep(backoff)
                backoff *= 2
