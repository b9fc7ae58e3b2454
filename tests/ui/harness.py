"""What the dashboard's browser tests share: bounded waits, an asyncio loop in a thread for the
monitor's server and the Kafka producer, the monitor served over HTTP, and a synchronous publisher."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from fleet_core.events import Topic
from fleet_core.schemas import Contract
from fleet_monitor.app import create_app
from fleet_monitor.settings import MonitorSettings
from fleet_sdk.embedded_broker import EmbeddedBroker, free_port
from support.monitor import SECRET, Publisher

T = TypeVar("T")

WAIT_S = 30.0
"""The longest any single wait in these tests may take."""


def wait_until(predicate: Callable[[], Any], *, what: str, timeout_s: float = WAIT_S) -> Any:
    """Poll ``predicate`` until it returns something truthy; that value, or AssertionError."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


class EventLoopThread:
    """An asyncio loop running in a daemon thread, for async servers and clients in a sync test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ui-test-loop", daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = WAIT_S) -> T:
        return self.submit(coro).result(timeout_s)

    def close(self) -> None:
        async def cancel_leftovers() -> None:
            # e.g. sse-starlette's process-wide shutdown watcher, which outlives the server
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_leftovers(), timeout_s=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


@dataclass
class RunningMonitor:
    url: str
    settings: MonitorSettings


class BrokerPublisher:
    """``support.monitor.Publisher`` driven from synchronous code through the loop thread."""

    def __init__(self, runner: EventLoopThread, bootstrap: str) -> None:
        self.runner = runner

        async def started() -> Publisher:
            publisher = Publisher(bootstrap)  # aiokafka binds to the loop it is created on
            await publisher.__aenter__()
            return publisher

        self.publisher = runner.run(started())

    def send(self, topic: Topic, payloads: list[Contract]) -> None:
        self.runner.run(self.publisher.send(topic, payloads))

    def close(self) -> None:
        self.runner.run(self.publisher.__aexit__(None, None, None))


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def serve_monitor(
    kafka: EmbeddedBroker, tmp_path: Path, event_loop_thread: EventLoopThread, **overrides: Any
) -> Iterator[RunningMonitor]:
    """The monitor over real HTTP, consuming from ``kafka``, until the block ends. ``overrides``
    replace the settings below (one-second buckets so charts fill while a test watches; drift
    windows of 100 rows so a shifted feature shows up after a few requests)."""
    values: dict[str, Any] = {
        "home": tmp_path / "monitor",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}",
        "kafka_bootstrap": kafka.bootstrap,
        "jwt_secret": SECRET,
        "consume_events": True,
        "bucket_s": 1.0,
        "tick_interval_s": 0.2,
        "stream_interval_s": 1.0,
        "analysis_interval_s": 2.0,
        "outbox_poll_interval_s": 0.2,
        "drift_window_rows": 100,
        "drift_min_rows": 50,
        "lake_enabled": False,
        "tune_gc": False,  # the monitor shares the test runner's process here
        **overrides,
    }
    settings = MonitorSettings(**values)
    with _served(create_app(settings), event_loop_thread, "monitor") as url:
        yield RunningMonitor(url, settings)


@contextmanager
def _served(app: Any, event_loop_thread: EventLoopThread, what: str) -> Iterator[str]:
    """``app`` (lifespan included) on a loopback port in the loop thread, ready; its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
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
            raise AssertionError(f"the {what} server exited during startup")
        return _ready(url)

    try:
        wait_until(up, what=f"the {what}'s /readyz to answer 200")
        yield url
    finally:
        server.should_exit = True
        serving.result(WAIT_S)


@contextmanager
def serve_registry(
    kafka: EmbeddedBroker, tmp_path: Path, event_loop_thread: EventLoopThread
) -> Iterator[str]:
    """The registry over real HTTP, publishing its events to ``kafka``; its base URL."""
    from fleet_registry.app import create_app as registry_app
    from fleet_registry.settings import RegistrySettings

    home = tmp_path / "registry"
    home.mkdir(exist_ok=True)
    settings = RegistrySettings(
        home=home,
        database_url=f"sqlite+aiosqlite:///{home / 'registry.db'}",
        artifact_uri=f"file://{home / 'artifacts'}",
        kafka_bootstrap=kafka.bootstrap,
        jwt_secret=SECRET,
        consume_events=False,
        outbox_poll_interval_s=0.2,
    )
    with _served(registry_app(settings), event_loop_thread, "registry") as url:
        yield url
