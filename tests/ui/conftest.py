"""Browser tests of the monitor dashboard: Debian's chromium driven by Playwright, against the real
monitor (uvicorn on a loopback port) consuming from the real embedded broker.

Fixtures:

- ``chromium_executable``: the path of the system Chromium; skipped locally when it is missing,
  a failure under CI (which installs it).
- ``event_loop_thread``: an asyncio loop in a background thread. The monitor's server and the Kafka
  producer live there while the test drives the browser with Playwright's synchronous API.
- ``monitor``: the monitor app served over HTTP, consuming from the ``kafka`` fixture, ready
  (``serve_monitor`` does the same with other settings).
- ``publisher``: publishes typed payloads to that broker, keyed by model.
- ``artifacts``: ``test-artifacts/ui/`` at the repository root, for screenshots.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from ui.harness import BrokerPublisher, EventLoopThread, RunningMonitor, serve_monitor

from fleet_sdk.embedded_broker import EmbeddedBroker

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def _skip_or_fail(reason: str) -> NoReturn:
    # CI installs chromium, so there a missing browser is a failure, not a skip.
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


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
    """The monitor over real HTTP with the test settings of ``serve_monitor``, ready."""
    with serve_monitor(kafka, tmp_path, event_loop_thread) as running:
        yield running


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
