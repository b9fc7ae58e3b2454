"""A reviewer approves a gated version from the dashboard: the real registry publishes the gate's
state to the real broker, the monitor shows it, a signed-in deployer clicks Approve, the monitor
forwards the review with their token, and the registry's new state comes back through the broker."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Dialog, expect, sync_playwright
from ui.harness import WAIT_S, EventLoopThread, serve_monitor, serve_registry

from fleet_core.auth import Role, TokenAuthority
from fleet_sdk.embedded_broker import EmbeddedBroker
from support.monitor import SECRET
from support.registry import skops_model, version_metadata

pytestmark = [pytest.mark.ui, pytest.mark.integration]

MODEL, TEAM = "shop-recs", "shop"
WAIT_MS = WAIT_S * 1000


def _auth(subject: str, role: Role, scopes: list[str] | None = None) -> dict[str, str]:
    token, _, _ = TokenAuthority(SECRET).issue(subject, role, [TEAM], scopes=scopes)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def registry_url(kafka: EmbeddedBroker, tmp_path: Path, event_loop_thread: EventLoopThread) -> Iterator[str]:
    with serve_registry(kafka, tmp_path, event_loop_thread) as url:
        yield url


def test_a_deployer_approves_a_gated_version_from_the_dashboard(
    kafka: EmbeddedBroker,
    tmp_path: Path,
    event_loop_thread: EventLoopThread,
    registry_url: str,
    chromium_executable: str,
    artifacts: Path,
) -> None:
    alice = _auth("alice", Role.DEPLOYER)
    with httpx.Client(base_url=registry_url, timeout=30) as registry:
        assert (
            registry.post("/v1/models", json={"name": MODEL, "team": TEAM}, headers=alice).status_code == 201
        )
        assert (
            registry.put(f"/v1/models/{MODEL}/gate", json={"approvals": 1}, headers=alice).status_code == 200
        )
        r = registry.post(
            f"/v1/models/{MODEL}/versions",
            data={"metadata": json.dumps(version_metadata(deploy_policy="gated"))},
            files={"artifact": ("model.skops", io.BytesIO(skops_model()))},
            headers=alice,
        )
        assert r.status_code == 201, r.text
        checks = [{"name": "evaluation", "status": "passed", "detail": "better: accuracy 0.93 against 0.88"}]
        checker = _auth("service:retrainer", Role.DEPLOYER, scopes=["delivery:checks"])
        r = registry.put(f"/v1/models/{MODEL}/versions/1/checks", json={"checks": checks}, headers=checker)
        assert r.json()["state"] == "awaiting_approval", r.text

    with (
        serve_monitor(kafka, tmp_path, event_loop_thread, registry_url=registry_url) as monitor,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=chromium_executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})

            def sign_in(subject: str) -> None:
                token = _auth(subject, Role.DEPLOYER)["Authorization"].removeprefix("Bearer ")
                page.goto(f"{monitor.url}/")
                page.evaluate("t => window.localStorage.setItem('fleet.monitor.token', t)", token)
                page.goto(f"{monitor.url}/#/models/{MODEL}")

            def answer(dialog: Dialog) -> None:
                dialog.accept("holdout +5 points, slices fine")

            gate = page.get_by_test_id("version-row-1").get_by_test_id("gate")
            # The registrant may not approve their own version: the registry's refusal is shown.
            sign_in("alice")
            expect(gate).to_contain_text("awaiting approval", timeout=WAIT_MS)
            expect(gate).to_contain_text("0 of 1 approvals")
            page.once("dialog", answer)
            gate.get_by_test_id("gate-approve").click()
            expect(page.get_by_test_id("notice")).to_contain_text("may not approve", timeout=WAIT_MS)

            sign_in("bob")
            expect(gate).to_contain_text("awaiting approval", timeout=WAIT_MS)
            page.once("dialog", answer)
            gate.get_by_test_id("gate-approve").click()
            expect(page.get_by_test_id("notice")).to_contain_text("ready", timeout=WAIT_MS)
            # The registry's new state came back through the broker to the monitor's page.
            expect(gate).to_contain_text("ready", timeout=WAIT_MS)
            expect(gate.get_by_test_id("gate-approve")).to_have_count(0)
            page.screenshot(path=artifacts / "gate-approved.png", full_page=True)
        finally:
            browser.close()

    with httpx.Client(base_url=registry_url, timeout=30) as registry:
        delivery = registry.get(f"/v1/models/{MODEL}/versions/1/checks", headers=alice).json()
    assert delivery["state"] == "ready" and delivery["approvals"] == 1
    (review,) = delivery["reviews"]
    assert (review["kind"], review["actor"], review["comment"]) == (
        "approve",
        "bob",
        "holdout +5 points, slices fine",
    )
