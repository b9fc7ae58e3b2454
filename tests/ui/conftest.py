"""Browser tests of the monitor dashboard: Debian's chromium driven by Playwright, against the real
monitor (uvicorn on a loopback port) consuming from the real embedded broker.

Fixtures:

- ``chromium_executable``: the path of the system Chromium; skipped locally when it is missing,
  a failure under CI (which installs it).
- ``event_loop_thread``: an asyncio loop in a background thread. The monitor's server and the Kafka
  producer live there while the test drives the browser with Playwright's synchronous API.
- ``monitor``: the monitor app served over HTTP, consuming from the ``kafka`` fixture, ready.
- ``publisher``: publishes typed payloads to that broker, keyed by model.
- ``artifacts``: ``test-artifacts/ui/`` at the repository root, for screenshots.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
import uvicorn
from ui.harness import WAIT_S, BrokerPublisher, EventLoopThread, RunningMonitor, wait_until

from fleet_monitor.app import create_app
from fleet_monitor.settings import MonitorSettings
from fleet_sdk.embedded_broker import EmbeddedBroker, free_port
from support.monitor import SECRET

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def _skip_or_fail(reason: str) -> NoReturn:
    # CI installs chromium, so there a missing browser is a failure, not a skip.
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    for candidate in (*CHROMIUM_CANDIDATES, shutil.which("chromium") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    _skip_or_fail("Chromium not installed: apt-get install chromium")


@pytest.fixture
def event_loop_thread() -> Iterator[EventLoopThread]:
    runner = EventLoopThread()
    yield runner
    runner.close()


@pytest.fixture
def monitor(
    kafka: EmbeddedBroker, tmp_path: Path, event_loop_thread: EventLoopThread
) -> Iterator[RunningMonitor]:
    """The monitor over real HTTP. One-second buckets so charts fill while the test watches; drift
    windows of 100 rows so a shifted feature shows up after a few requests."""
    settings = MonitorSettings(
        home=tmp_path / "monitor",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}",
        kafka_bootstrap=kafka.bootstrap,
        jwt_secret=SECRET,
        consume_events=True,
        bucket_s=1.0,
        tick_interval_s=0.2,
        stream_interval_s=1.0,
        analysis_interval_s=2.0,
        outbox_poll_interval_s=0.2,
        drift_window_rows=100,
        drift_min_rows=50,
        lake_enabled=False,
        tune_gc=False,  # the monitor shares the test runner's process here
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="on",
            # An open /v1/stream never ends by itself: do not wait long for it at shutdown.
            timeout_graceful_shutdown=3,
        )
    )
    serving = event_loop_thread.submit(server.serve())
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if serving.done():  # startup failed: show why instead of timing out
            serving.result()
            raise AssertionError("the monitor server exited during startup")
        return _ready(url)

    try:
        wait_until(up, what="the monitor's /readyz to answer 200 (consumer group joined)")
        yield RunningMonitor(url, settings)
    finally:
        server.should_exit = True
        serving.result(WAIT_S)


@pytest.fixture
def publisher(kafka: EmbeddedBroker, event_loop_thread: EventLoopThread) -> Iterator[BrokerPublisher]:
    pub = BrokerPublisher(event_loop_thread, kafka.bootstrap)
    yield pub
    pub.close()


@pytest.fixture
def artifacts() -> Path:
    path = REPO_ROOT / "test-artifacts" / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path
