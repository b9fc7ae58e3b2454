"""Canaries on the real broker, gated by the real monitor: traffic split as the deployer's route
table says, the monitor's verdicts move a healthy candidate step by step to 100 %, and a failing
candidate is rolled back with no human action. The serving engine is the in-memory one; the
traffic is published as the gateway would log it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from fleet_core.events import Topic
from fleet_sdk.embedded_broker import EmbeddedBroker, free_port
from support.deployer import DeployerHarness, FakeServingControl, running_deployer
from support.monitor import MonitorHarness, Population, Publisher, inference, registered, running_monitor
from support.registry_double import RegistryDouble

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "credit"


async def _serve_by_route(
    d: DeployerHarness, pub: Publisher, rollout_id: str, *, bad_version: int | None, timeout_s: float
) -> dict[str, Any]:
    """Send traffic as the gateway would, following the live route table, until the rollout ends."""
    population = Population(seed=4)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rollout = (await d.client.get(f"/v1/rollouts/{rollout_id}", headers=d.auth())).json()
        if rollout["phase"] not in ("pending", "progressing", "paused"):
            return rollout
        table = (await d.client.get(f"/v1/routes/{MODEL}", headers=d.auth())).json()["table"]
        batch = []
        for arm in table["arms"]:
            for i in range(round(arm["weight"] / 100 * 60)):
                failing = arm["version"] == bad_version and i % 3 == 0
                batch.append(
                    inference(MODEL, arm["version"], population.rows(1), status="error" if failing else "ok")
                )
        await pub.send(Topic.INFERENCE_LOGGED, batch)
        await asyncio.sleep(0.2)
    raise AssertionError(f"rollout {rollout_id} did not finish within {timeout_s:g} s")


async def _stack(kafka: EmbeddedBroker, tmp_path: Path) -> tuple[Any, Any]:
    for name in ("deployer", "monitor"):
        (tmp_path / name).mkdir()
    deployer = running_deployer(
        tmp_path / "deployer",
        serving=FakeServingControl(),
        kafka_bootstrap=kafka.bootstrap,
        consume_events=True,
        registry_url=f"http://127.0.0.1:{free_port()}",
        progress_interval_s=0.2,
    )
    monitor = running_monitor(
        tmp_path / "monitor",
        kafka_bootstrap=kafka.bootstrap,
        consume_events=True,
        analysis_interval_s=0.5,
        registry_url=None,
    )
    return deployer, monitor


async def _ready(d: DeployerHarness, m: MonitorHarness, pub: Publisher) -> None:
    versions = [registered(MODEL, 1, deploy_policy="direct"), registered(MODEL, 2), registered(MODEL, 3)]
    registry = RegistryDouble()  # what the deployer confirms each model.registered with
    for version in versions:
        registry.add(version)
    d.controller.registry = registry
    await pub.send(Topic.MODEL_REGISTERED, versions)
    await m.wait_for(lambda: (MODEL, 3) in m.engine.versions, what="the monitor to know the versions")

    async def served() -> bool:
        r = await d.client.get(f"/v1/routes/{MODEL}", headers=d.auth())
        return r.status_code == 200 and [a["version"] for a in r.json()["table"]["arms"]] == [1]

    await m.wait_for(served, what="v1 to serve all traffic")
    # Small verdicts for a short test: 20 candidate requests per step.
    r = await m.client.put(f"/v1/models/{MODEL}/config", json={"analysis_min_requests": 20}, headers=m.auth())
    assert r.status_code == 200, r.text


async def test_a_healthy_canary_is_promoted_step_by_step_by_the_monitors_verdicts(
    kafka: EmbeddedBroker, tmp_path: Path
) -> None:
    deployer, monitor = await _stack(kafka, tmp_path)
    async with deployer as d, monitor as m, Publisher(kafka.bootstrap) as pub:
        await _ready(d, m, pub)
        started = await d.client.post(
            "/v1/rollouts",
            json={
                "model": MODEL,
                "version": 2,
                "strategy": "canary",
                "steps": [20, 50, 100],
                "step_interval_s": 1,
            },
            headers=d.auth(),
        )
        assert started.status_code == 201, started.text
        done = await _serve_by_route(d, pub, started.json()["id"], bad_version=None, timeout_s=60)
        assert done["phase"] == "promoted", done
        table = (await d.client.get(f"/v1/routes/{MODEL}", headers=d.auth())).json()["table"]
        assert [(a["version"], a["weight"]) for a in table["arms"]] == [(2, 100.0)]
        steps = [e.data.step for e in await d.published() if e.data.rollout_id == done["id"]]
        assert steps == [20, 50, 100]
        verdicts = [
            e.data for e in await m.published(Topic.ROLLOUT_ANALYSIS) if e.data.rollout_id == done["id"]
        ]
        assert {v.step for v in verdicts if v.verdict == "pass"} == {20, 50}
        assert all(v.verdict != "fail" for v in verdicts)


async def test_a_failing_canary_is_rolled_back_without_a_human(kafka: EmbeddedBroker, tmp_path: Path) -> None:
    deployer, monitor = await _stack(kafka, tmp_path)
    async with deployer as d, monitor as m, Publisher(kafka.bootstrap) as pub:
        await _ready(d, m, pub)
        started = await d.client.post(
            "/v1/rollouts",
            json={
                "model": MODEL,
                "version": 3,
                "strategy": "canary",
                "steps": [30, 100],
                "step_interval_s": 1,
            },
            headers=d.auth(),
        )
        done = await _serve_by_route(d, pub, started.json()["id"], bad_version=3, timeout_s=60)
        assert done["phase"] == "rolled_back" and "error rate" in done["reason"], done
        table = (await d.client.get(f"/v1/routes/{MODEL}", headers=d.auth())).json()["table"]
        assert [(a["version"], a["weight"]) for a in table["arms"]] == [(1, 100.0)]

        async def alert_resolved() -> bool:
            alerts = (await m.client.get("/v1/alerts", params={"kind": "rollout"})).json()
            return [(a["name"], a["state"]) for a in alerts] == [("rollout_failed", "resolved")]

        await m.wait_for(alert_resolved, timeout_s=10, what="the failing-canary alert to resolve")
