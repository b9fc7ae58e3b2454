"""What the dashboard's browser tests share: bounded waits, an asyncio loop in a thread for the
monitor's server and the Kafka producer, and a synchronous publisher."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from fleet_core.events import Topic
from fleet_core.schemas import Contract
from fleet_monitor.settings import MonitorSettings
from support.monitor import Publisher

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
