"""Alerts reach an Alertmanager-compatible receiver over real HTTP (a loopback server standing in
for Alertmanager's POST /api/v2/alerts), and a receiver that is down is retried, not fatal."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleet_monitor.entities import Alert
from fleet_monitor.notifier import AlertNotifier


class Receiver:
    def __init__(self) -> None:
        self.posts: list[tuple[str, list[dict]]] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.fail_next:
                    receiver.fail_next -= 1
                    self.send_response(503)
                else:
                    receiver.posts.append((self.path, body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return  # keep the test output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.server.shutdown()


def alert(state: str = "firing") -> Alert:
    return Alert(
        id=7,
        fingerprint="drift/data_drift/credit/2/",
        kind="drift",
        name="data_drift",
        model="credit",
        version=2,
        severity="warning",
        state=state,
        summary="data drift on credit v2: income",
        value=1.2,
        details={},
        started_at=datetime(2026, 11, 25, 9, tzinfo=UTC),
        resolved_at=datetime(2026, 11, 25, 10, tzinfo=UTC) if state == "resolved" else None,
    )


async def test_firing_and_resolved_alerts_are_posted_in_alertmanager_format(receiver: Receiver) -> None:
    notifier = AlertNotifier(receiver.url, generator_url="http://monitor:8003")
    notifier.start()
    try:
        receiver.fail_next = 1  # the first attempt meets a 503 and is retried
        notifier.push(alert("firing"))
        notifier.push(alert("resolved"))
        for _ in range(100):
            if notifier.sent == 2:  # the receiver answered, and the notifier saw the answer
                break
            await asyncio.sleep(0.05)
    finally:
        await notifier.stop()
    assert len(receiver.posts) == 1
    path, body = receiver.posts[0]
    assert path == "/api/v2/alerts"
    assert [b["labels"]["alertname"] for b in body] == ["FleetDataDrift", "FleetDataDrift"]
    assert "endsAt" not in body[0] and body[1]["endsAt"].startswith("2026-11-25T10:00")
    assert body[0]["annotations"]["summary"] == "data drift on credit v2: income"
    assert notifier.failed == 2 and notifier.sent == 2
