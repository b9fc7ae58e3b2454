"""The fleet overview with 1,000 registered models from 20 teams, in a real browser: the first page
renders, a search by name finds the one model, a sort by traffic and a team filter come back from
the server, each within 2 s measured on the browser's own clock; the page never holds more than
one page of models."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Error, Page, expect, sync_playwright
from ui.harness import BrokerPublisher, EventLoopThread, RunningMonitor, serve_monitor, wait_until

from fleet_core.events import InferenceLogged, ModelRegistered, Topic
from fleet_sdk.embedded_broker import EmbeddedBroker
from support.monitor import Population, inference, registered

pytestmark = [pytest.mark.ui, pytest.mark.integration]

MODELS = 1000
TEAMS = 20
PAGE_SIZE = 50  # the dashboard's page
BUDGET_MS = 2000.0
HOT = 421  # the busiest model
ROWS = "[data-testid=models-table] tbody tr[data-model]"


def model_name(i: int) -> str:
    return f"t{i % TEAMS:02d}-model-{i:04d}"


def fleet() -> list[ModelRegistered]:
    """1,000 versions sharing one real reference profile (computing 1,000 profiles would only slow
    the test down; the monitor treats each as its own model)."""
    template = registered(model_name(0))
    return [
        template.model_copy(update={"model": model_name(i), "team": f"team-{i % TEAMS:02d}"})
        for i in range(MODELS)
    ]


def traffic() -> list[InferenceLogged]:
    """1 to 10 requests per model over the last 10 s, and 60 for the hot model."""
    row = Population(seed=11).rows(1)
    now = datetime.now(UTC)
    events = []
    for i in range(MODELS):
        count = 60 if i == HOT else 1 + i % 10
        for n in range(count):
            event = inference(model_name(i), 1, row, [0], latency_ms=4.0 + i % 13)
            at = now - timedelta(seconds=10 * n / count)
            events.append(event.model_copy(update={"timestamp": at}))
    return events


def overview(monitor: RunningMonitor) -> dict[str, int]:
    body = httpx.get(f"{monitor.url}/v1/overview", params={"limit": 1}, timeout=10).json()
    return {"models": body["total_models"], "events": body["events_ingested"]}


def rows_then_clock(page: Page, condition: str) -> float:
    """Wait, inside the page, until ``condition`` holds for the overview's row elements, and return
    ``performance.now()`` at that moment (milliseconds on the browser's clock)."""
    handle = page.wait_for_function(
        f"""() => {{
            const rows = [...document.querySelectorAll({ROWS!r})];
            return ({condition}) ? performance.now() : false;
        }}""",
        polling="raf",
        timeout=30_000,
    )
    return float(handle.json_value())


@pytest.fixture
def monitor(
    kafka: EmbeddedBroker, tmp_path: Path, event_loop_thread: EventLoopThread
) -> Iterator[RunningMonitor]:
    """The monitor with its production windows (10 s buckets, a 1 s timer, the stream every 2 s):
    the one-second buckets of the other UI tests would close 1,000 buckets a second here."""
    with serve_monitor(
        kafka, tmp_path, event_loop_thread, bucket_s=10.0, tick_interval_s=1.0, stream_interval_s=2.0
    ) as running:
        yield running


def test_the_overview_of_a_thousand_models_renders_and_searches_within_two_seconds(
    monitor: RunningMonitor,
    publisher: BrokerPublisher,
    chromium_executable: str,
    artifacts: Path,
) -> None:
    started = time.monotonic()
    publisher.send(Topic.MODEL_REGISTERED, list(fleet()))
    wait_until(
        lambda: overview(monitor)["models"] == MODELS,
        what="the monitor to learn 1,000 models",
        timeout_s=120,
    )
    events = traffic()
    publisher.send(Topic.INFERENCE_LOGGED, list(events))
    wait_until(
        lambda: overview(monitor)["events"] >= len(events),
        what="the monitor to ingest the traffic",
        timeout_s=60,
    )
    fed_s = time.monotonic() - started

    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text}")

    def on_page_error(error: Error) -> None:
        problems.append(f"uncaught: {error}")

    timings: dict[str, float] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("console", on_console)
            page.on("pageerror", on_page_error)

            # First page: from the start of the navigation (performance.now() counts from there).
            page.goto(f"{monitor.url}/", wait_until="commit")
            timings["first page"] = rows_then_clock(page, f"rows.length === {PAGE_SIZE}")
            assert page.get_by_test_id("page-range").inner_text() == f"1\u2013{PAGE_SIZE} of 1,000"
            assert page.get_by_test_id("overview-subtitle").inner_text().startswith("1,000 models")
            first = page.locator(ROWS).first.get_attribute("data-model")
            assert first == model_name(0), "sorted by name: t00-model-0000 comes first"
            assert page.locator("[data-testid=filter-team] option").count() == TEAMS + 1

            # A search by name: from the keystroke to the one matching row.
            target = model_name(537)
            start = page.evaluate("performance.now()")
            page.get_by_test_id("overview-search").fill("model-0537")
            found = rows_then_clock(page, f"rows.length === 1 && rows[0].dataset.model === {target!r}")
            timings["search"] = found - start
            assert "1 match" in page.get_by_test_id("overview-subtitle").inner_text()
            assert "#/?q=model-0537" in page.url, "the search is kept in the address"
            page.screenshot(path=artifacts / "overview-1000-search.png")

            # Sorted by traffic, over every model (the search cleared): the hot one first.
            page.get_by_test_id("overview-search").fill("")
            page.wait_for_function(f"document.querySelectorAll({ROWS!r}).length === {PAGE_SIZE}")
            start = page.evaluate("performance.now()")
            page.get_by_test_id("overview-sort").select_option("rps")
            sorted_at = rows_then_clock(page, f"rows.length && rows[0].dataset.model === {model_name(HOT)!r}")
            timings["sort by traffic"] = sorted_at - start
            page.get_by_test_id("page-next").click()
            expect(page.get_by_test_id("page-range")).to_have_text("51\u2013100 of 1,000")
            assert "page=2" in page.url and "sort=rps" in page.url
            assert page.locator(ROWS).count() == PAGE_SIZE
            assert page.locator(f"[data-model='{model_name(HOT)}']").count() == 0, "page 2 is not page 1"

            # One team (back to page 1): every row on the page is that team's, 50 models in all.
            start = page.evaluate("performance.now()")
            page.get_by_test_id("filter-team").select_option("team-07")
            team_at = rows_then_clock(
                page,
                f"rows.length === {PAGE_SIZE} && rows.every((r) => r.children[1].textContent === 'team-07')",
            )
            timings["team filter"] = team_at - start
            assert page.get_by_test_id("page-range").inner_text() == f"1\u2013{PAGE_SIZE} of 50"
            assert page.get_by_test_id("page-next").is_disabled()
            page.screenshot(path=artifacts / "overview-1000-team.png")
        finally:
            browser.close()

    report = ", ".join(f"{k} {v:.0f} ms" for k, v in timings.items())
    print(f"1,000 models fed in {fed_s:.1f} s; {report}")
    for what, ms in timings.items():
        assert ms < BUDGET_MS, f"{what} took {ms:.0f} ms on the browser's clock ({report})"
    assert problems == [], "\n".join(problems)
