"""The monitor dashboard in a real browser: the fleet overview lists what the broker announced, the
model page charts live traffic and updates in place, drift and alerts show up, and nothing logs an
error to the console."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Error, Page, expect, sync_playwright
from ui.harness import WAIT_S, BrokerPublisher, RunningMonitor, wait_until

from fleet_core.events import InferenceLogged, RetrainCompleted, Topic, VersionChecked
from fleet_core.schemas import DatasetRef
from support.monitor import Population, inference, registered, route_update

pytestmark = [pytest.mark.ui, pytest.mark.integration]

MODEL = "churn"
IDLE_MODEL = "fraud"
WAIT_MS = WAIT_S * 1000


def traffic(
    population: Population,
    version: int,
    *,
    requests: int,
    over_s: float,
    rows: int = 5,
    shift: dict[str, float] | None = None,
    error_every: int = 0,
) -> list[InferenceLogged]:
    """``requests`` served requests of ``rows`` rows each, spread evenly over the last ``over_s``
    seconds (the monitor buckets by event time, so the charts fill at once)."""
    now = time.time()
    events = []
    for i in range(requests):
        batch = population.rows(rows, shift=shift)
        failed = error_every > 0 and i % error_every == 0
        event = inference(
            MODEL,
            version,
            batch,
            None if failed else population.predictions(batch),
            latency_ms=8.0 + (i * 7919 % 31) + (12.0 if version == 2 else 0.0),
            status="error" if failed else "ok",
        )
        at = now - over_s + over_s * i / max(requests, 1)
        events.append(event.model_copy(update={"timestamp": datetime.fromtimestamp(at, UTC)}))
    return events


def _known(monitor: RunningMonitor, model: str, *, versions: int, rollout: bool = False) -> bool:
    response = httpx.get(f"{monitor.url}/v1/models/{model}")
    if response.status_code != 200:
        return False
    detail = response.json()
    registered = [v for v in detail["versions"] if v["origin"] != "unknown"]
    return len(registered) >= versions and (detail["rollout"] is not None or not rollout)


def _count(text: str) -> int:
    digits = text.replace(",", "")
    return int(digits) if digits.isdigit() else -1


def _chart_state(page: Page, kind: str) -> dict[str, Any]:
    return page.evaluate("kind => (window.__fleetCharts || {})[kind] || null", kind) or {}


def test_dashboard_shows_the_fleet_and_charts_live_traffic(
    monitor: RunningMonitor,
    publisher: BrokerPublisher,
    chromium_executable: str,
    artifacts: Path,
) -> None:
    started = time.monotonic()
    population = Population(seed=7)
    dataset = DatasetRef(dataset="churn-train", version=5, content_hash="c0ffee")
    publisher.send(
        Topic.MODEL_REGISTERED,
        [
            registered(MODEL, 1),
            registered(MODEL, 2, origin="retrain", parent_version=1, dataset_version=dataset),
            registered(IDLE_MODEL, 1, task="regression"),
            registered(MODEL, 3, deploy_policy="gated"),
        ],
    )
    publisher.send(
        Topic.VERSION_CHECKED,
        [
            VersionChecked(
                model=MODEL,
                version=3,
                team="growth",
                state="failed",
                reason="check 'evaluation' failed: worse: accuracy 0.6100 against v1's 0.9300",
            )
        ],
    )
    publisher.send(
        Topic.ROLLOUT_UPDATED,
        [
            route_update(
                MODEL,
                [(1, 90), (2, 10)],
                strategy="canary",
                phase="progressing",
                version=2,
                step=1,
                rollout_id="ro-ui",
            )
        ],
    )
    publisher.send(
        Topic.RETRAIN_COMPLETED,
        [
            RetrainCompleted(
                job_id="job-ui-0001",
                model=MODEL,
                outcome="registered",
                champion_version=1,
                new_version=2,
                dataset_version=dataset,
                champion_metrics={"accuracy": 0.71},
                candidate_metrics={"accuracy": 0.93},
                reasons=["better: accuracy 0.9300 against the champion's 0.7100 on 60 holdout rows"],
            )
        ],
    )
    # The monitor consumes each topic on its own consumer, so wait for the catalogue before any
    # traffic: requests for a version it does not know yet are counted but not drift-scored.
    wait_until(
        lambda: _known(monitor, MODEL, versions=3, rollout=True) and _known(monitor, IDLE_MODEL, versions=1),
        what="the monitor to learn the models and the rollout",
    )
    # Fifteen seconds of history: v1 at 8 rps with some errors; v2's income drifted by 3 sigma.
    publisher.send(Topic.INFERENCE_LOGGED, traffic(population, 1, requests=120, over_s=15, error_every=25))
    publisher.send(
        Topic.INFERENCE_LOGGED, traffic(population, 2, requests=30, over_s=15, shift={"income": 3.0})
    )
    wait_until(
        lambda: httpx.get(f"{monitor.url}/v1/models/{MODEL}").json().get("series"),
        what="the monitor to ingest the first traffic",
    )

    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text} ({message.location.get('url')})")

    def on_page_error(error: Error) -> None:
        problems.append(f"uncaught: {error}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("console", on_console)
            page.on("pageerror", on_page_error)

            # The fleet overview, live from /v1/stream.
            page.goto(f"{monitor.url}/")
            row = page.get_by_test_id(f"model-row-{MODEL}")
            expect(row).to_be_visible(timeout=WAIT_MS)
            expect(page.get_by_test_id(f"model-row-{IDLE_MODEL}")).to_contain_text("not deployed")
            expect(row.get_by_test_id("traffic")).to_have_text("v1 90% · v2 10%")
            expect(row).to_contain_text("canary v2 · progressing · step 1")
            expect(row.get_by_test_id("state-badge")).to_have_text("serving")
            expect(page.get_by_test_id("live-status")).to_have_attribute("data-mode", "live", timeout=WAIT_MS)
            ingested = page.get_by_test_id("events-ingested")
            wait_until(
                lambda: _count(ingested.inner_text()) >= 150, what="the header to count the ingested events"
            )
            page.screenshot(path=artifacts / "overview.png", full_page=True)

            # The model page: charts built once, then fed with setData on every poll.
            page.get_by_test_id(f"model-link-{MODEL}").click()
            expect(page).to_have_url(f"{monitor.url}/#/models/{MODEL}")
            expect(page.get_by_test_id("version-row-2")).to_contain_text("v2 ← v1 (retrain)")
            expect(page.get_by_test_id("version-row-2")).to_contain_text("churn-train@5")
            gate = page.get_by_test_id("version-row-3").get_by_test_id("gate")
            expect(gate).to_contain_text("failed", timeout=WAIT_MS)
            expect(gate).to_contain_text("worse: accuracy 0.6100 against v1's 0.9300")
            retraining = page.get_by_test_id("retraining-table")
            expect(retraining).to_contain_text("v1 → v2", timeout=WAIT_MS)
            expect(retraining).to_contain_text("accuracy 0.710 → 0.930")
            traffic_chart = page.get_by_test_id("chart-traffic")
            expect(traffic_chart.locator("canvas")).to_be_visible(timeout=WAIT_MS)
            for testid in ("chart-latency", "chart-errors"):
                expect(page.get_by_test_id(testid).locator("canvas")).to_be_visible(timeout=WAIT_MS)
            before = wait_until(
                lambda: (s := _chart_state(page, "traffic")).get("points", 0) >= 10 and s,
                what="the traffic chart to show the history",
            )
            assert before["lines"] == ["v1", "v2"], before

            # A burst of 200 requests in one second: the traffic chart must climb well above 8 rps.
            publisher.send(Topic.INFERENCE_LOGGED, traffic(population, 1, requests=200, over_s=0.5))
            after = wait_until(
                lambda: (
                    (s := _chart_state(page, "traffic")).get("max", 0) >= max(50, 4 * before["max"]) and s
                ),
                what="the traffic chart to show the burst",
            )
            assert after["points"] >= before["points"]
            assert after["builds"] == before["builds"] == 1, "charts must be updated in place, not rebuilt"

            # v2's shifted income is caught by the drift test and marked in the drift table.
            drift_group = page.get_by_test_id("drift-table").get_by_test_id("drift-2-data")
            expect(drift_group).to_be_visible(timeout=WAIT_MS)
            drifted = page.get_by_test_id("drift-table").locator("tr.drifted", has_text="income")
            expect(drifted.first).to_be_visible()
            page.screenshot(path=artifacts / "model.png", full_page=True)

            # The alerts page lists the drift alert it raised.
            page.get_by_test_id("nav").get_by_text("Alerts").click()
            alerts = page.get_by_test_id("alerts-table")
            expect(alerts).to_be_visible()
            drift_alert = alerts.locator("tr[data-state=firing]", has_text="data_drift")
            expect(drift_alert).to_be_visible(timeout=WAIT_MS)
            page.get_by_test_id("alerts-filter-resolved").click()
            expect(page.get_by_test_id("alerts-count")).to_contain_text("resolved", timeout=WAIT_MS)
            page.get_by_test_id("alerts-filter-firing").click()
            expect(alerts.locator("tr[data-state=firing]").first).to_be_visible(timeout=WAIT_MS)
            page.screenshot(path=artifacts / "alerts.png", full_page=True)

            # An unknown model is a message on the page, not an error.
            page.goto(f"{monitor.url}/#/models/no-such-model")
            expect(page.get_by_test_id("model-missing")).to_be_visible(timeout=WAIT_MS)
        finally:
            browser.close()

    assert problems == [], "\n".join(problems)
    assert time.monotonic() - started < 60
