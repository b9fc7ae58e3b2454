"""The closed loop on the real stack (broker, Ray, all five services as processes), with no human
action: a model trained on distribution A receives traffic from distribution B with labels; the
monitor detects drift, the retrainer rebuilds the model on the new data and registers a better
version with its lineage, the deployer canaries it on the monitor's verdicts and promotes it —
and no client request fails along the way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from fleet_core.events import Topic, parse_event
from fleet_sdk.client import Client
from fleet_sdk.config import ClientConfig
from fleet_sdk.errors import FleetAPIError, FleetUnavailable
from fleet_sdk.stack import Stack, StackState
from support import backend
from support.kafka import read_topic

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

MODEL = "loop-credit"
FEATURES = ["f0", "f1"]


def population_a(n: int, rng: np.random.Generator) -> pd.DataFrame:
    frame = pd.DataFrame(rng.normal(0, 1, size=(n, 2)), columns=FEATURES)
    frame["label"] = (frame["f0"] + frame["f1"] > 0).astype(int)
    return frame


def population_b(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Moved inputs and a new rule: what the old model never saw."""
    frame = pd.DataFrame(rng.normal(3, 1, size=(n, 2)), columns=FEATURES)
    frame["label"] = (frame["f0"] - frame["f1"] > 0).astype(int)
    return frame


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, StackState, Path]]:
    home = tmp_path_factory.mktemp("loop")
    stack = Stack(home)
    state = stack.start(
        broker_port=0,
        ports={"registry": 0, "deployer": 0, "gateway": 0, "monitor": 0, "retrainer": 0},
        detach=True,
        log=lambda _: None,
        env={
            "FLEET_LOG_JSON": "false",
            "FLEET_RATE_LIMIT_RPS": "2000",
            "FLEET_RATE_LIMIT_BURST": "4000",
            "FLEET_DRIFT_WINDOW_ROWS": "200",
            "FLEET_LAKE_FLUSH_INTERVAL_S": "1",
            "FLEET_ANALYSIS_INTERVAL_S": "1",
            "FLEET_MIN_NEW_LABELLED_ROWS": "100",
            "FLEET_SCHEDULE_CHECK_S": "2",
            "FLEET_CANARY_STEPS": "50,100",
            "FLEET_CANARY_STEP_INTERVAL_S": "2",
            "FLEET_JOB_NUM_CPUS": "0.5",
            "FLEET_JOB_MEMORY_MB": "512",
            **backend.stack_env(),
        },
    )
    try:
        yield stack, state, home
    finally:
        stack.stop()


def test_drift_retrains_canaries_and_promotes_a_better_version_with_no_failed_request(
    stack: tuple[Stack, StackState, Path],
) -> None:
    _, state, home = stack
    client = Client(config=ClientConfig.load(home / "config"))
    rng = np.random.default_rng(0)
    train = population_a(400, rng)
    champion = RandomForestClassifier(n_estimators=30, random_state=0).fit(train[FEATURES], train["label"])
    holdout = population_a(200, rng)
    client.register_sklearn(
        MODEL,
        champion,
        train[FEATURES],
        train["label"],
        X_test=holdout[FEATURES],
        y_test=holdout["label"],
        team="loop",
        target_name="label",
        deploy_policy="direct",
    )

    deadline = time.monotonic() + 180
    while True:  # served, and known to the monitor (its thresholds can be set)
        try:
            client.predict(MODEL, train[FEATURES].head(1).to_dict("records"))
            # The canary is gated on accuracy here; p95 latencies of two arms a few milliseconds
            # apart on a shared 2-core box (one of them freshly loaded) are noise, and a rollback
            # on one (24.8 against 12.3 ms, seen once) is not what this test is about.
            client.monitor_config(MODEL, analysis_min_requests=20, analysis_max_latency_ratio=10)
            break
        except (FleetAPIError, FleetUnavailable):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)

    sent = failed = 0
    promoted: dict[str, Any] | None = None
    deadline = time.monotonic() + 480
    while promoted is None and time.monotonic() < deadline:
        batch = population_b(10, rng)
        sent += 1
        try:
            answer = client.predict(MODEL, batch[FEATURES].to_dict("records"))
            client.feedback(answer["request_id"], MODEL, [int(v) for v in batch["label"]])
        except (FleetAPIError, FleetUnavailable):
            failed += 1
        if sent % 20 == 0:
            promoted = next(
                (r for r in client.rollouts(MODEL) if r["version"] == 2 and r["phase"] == "promoted"), None
            )
        time.sleep(0.02)
    jobs = client.jobs(MODEL)
    assert promoted is not None, f"v2 was not promoted; jobs: {jobs}; rollouts: {client.rollouts(MODEL)}"
    assert failed == 0, f"{failed} of {sent} client requests failed during the loop"

    # Lineage: v2 is a retrain of v1, on a new dataset version, caused by a drift event.
    v1, v2 = client.get_version(MODEL, 1), client.get_version(MODEL, 2)
    assert (v2["origin"], v2["parent_version"]) == ("retrain", 1)
    assert v2["dataset_version"]["dataset"] == v1["dataset_version"]["dataset"]
    assert v2["dataset_version"]["version"] > v1["dataset_version"]["version"]
    records = asyncio.run(
        read_topic(state.env["FLEET_KAFKA_BOOTSTRAP"], Topic.DRIFT_DETECTED.value, expect=1, timeout_s=15)
    )
    drift_ids = {parse_event(Topic.DRIFT_DETECTED, r.value).id for r in records}
    assert v2["trigger_event_id"] in drift_ids

    # The job that made it: one registered job, the candidate better on the same holdout.
    registered = [j for j in jobs if j["state"] == "registered"]
    assert len(registered) == 1 and registered[0]["new_version"] == 2
    result = registered[0]["result"]
    assert result["candidate_metrics"]["accuracy"] > result["champion_metrics"]["accuracy"]
    assert any("canary requested" in line for line in client.job_logs(registered[0]["id"]))

    table = client.routes(MODEL)["table"]
    assert [(a["version"], a["weight"]) for a in table["arms"]] == [(2, 100.0)]
    assert client.predict(MODEL, population_b(1, rng)[FEATURES].to_dict("records"))["version"] == 2


def _client(home: Path) -> Client:
    return Client(config=ClientConfig.load(home / "config"))


def test_a_second_drift_during_the_cooldown_starts_no_job(stack: tuple[Stack, StackState, Path]) -> None:
    from fleet_core.broker import make_broker
    from fleet_core.events import DriftDetected, make_event

    _, state, home = stack
    client = _client(home)
    before = client.jobs(MODEL)
    assert [j["state"] for j in before] == ["registered"], "runs after the closed-loop test"
    drift = DriftDetected(
        model=MODEL,
        version=2,
        kind="data",
        window_start=datetime.now(UTC),
        window_end=datetime.now(UTC),
        sample_size=200,
        scores=[],
        drifted_features=["f0"],
    )

    async def publish() -> None:
        broker = make_broker(state.env["FLEET_KAFKA_BOOTSTRAP"])
        await broker.connect()
        try:
            event = make_event(Topic.DRIFT_DETECTED, drift, source="/another-monitor")
            await broker.publish(event.to_bytes(), Topic.DRIFT_DETECTED.value, key=MODEL.encode())
        finally:
            await broker.stop()

    asyncio.run(publish())
    time.sleep(6)  # the retrainer consumes it within a second or two
    assert client.jobs(MODEL) == before


def _labelled_traffic(client: Client, model: str, rng: np.random.Generator, requests: int) -> None:
    for _ in range(requests):
        batch = population_a(10, rng)
        answer = client.predict(model, batch[FEATURES].to_dict("records"))
        client.feedback(answer["request_id"], model, [int(v) for v in batch["label"]])


def _register_and_serve(client: Client, model: str, rng: np.random.Generator) -> None:
    train = population_a(300, rng)
    estimator = RandomForestClassifier(n_estimators=10, random_state=0).fit(train[FEATURES], train["label"])
    client.register_sklearn(
        model,
        estimator,
        train[FEATURES],
        train["label"],
        team="loop",
        target_name="label",
        deploy_policy="direct",
    )
    deadline = time.monotonic() + 180
    while True:
        try:
            client.predict(model, train[FEATURES].head(1).to_dict("records"))
            return
        except (FleetAPIError, FleetUnavailable):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _wait_job(client: Client, job_id: str, states: set[str], timeout_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.job(job_id)
        if job["state"] in states:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} not in {states} within {timeout_s:g} s: {client.job(job_id)}")


def test_a_candidate_that_is_not_better_is_rejected_by_the_gate(
    stack: tuple[Stack, StackState, Path],
) -> None:
    _, _, home = stack
    client = _client(home)
    rng = np.random.default_rng(1)
    _register_and_serve(client, "loop-gate", rng)
    _labelled_traffic(client, "loop-gate", rng, 20)
    client.retrain_policy("loop-gate", min_improvement=0.5)  # no candidate can be 50 points better
    time.sleep(2)  # the lake flushes every second
    started = client.retrain("loop-gate")
    assert started["action"] == "start", started
    job = _wait_job(client, started["job"]["id"], {"registered", "rejected", "failed"})
    assert job["state"] == "rejected" and "required" in job["reason"], job
    assert [v["version"] for v in client.list_versions("loop-gate")] == [1], "a loser is never registered"
    again = client.retrain("loop-gate")
    assert again["action"] == "start", "a manual request skips the cooldown"
    _wait_job(client, again["job"]["id"], {"registered", "rejected", "failed"})


def test_a_retrainer_killed_mid_job_marks_it_failed_and_registers_nothing(
    stack: tuple[Stack, StackState, Path],
) -> None:
    stack_obj, _, home = stack
    client = _client(home)
    rng = np.random.default_rng(2)
    _register_and_serve(client, "loop-restart", rng)
    _labelled_traffic(client, "loop-restart", rng, 10)
    started = client.retrain("loop-restart")
    assert started["action"] == "start"
    _wait_job(client, started["job"]["id"], {"running"})
    stack_obj.restart_service("retrainer")
    job = _wait_job(client, started["job"]["id"], {"registered", "rejected", "failed"})
    if job["state"] == "failed":
        assert "restarted" in job["reason"]
    versions = [v["version"] for v in client.list_versions("loop-restart")]
    assert versions == ([1, 2] if job["state"] == "registered" else [1]), "never a duplicate version"
