"""The closed loop on the real stack (broker, Ray, all five services as processes), with no human
action: a model trained on distribution A receives traffic from distribution B with labels; the
monitor detects drift, the retrainer rebuilds the model on the new data and registers a better
version with its lineage, the deployer canaries it on the monitor's verdicts and promotes it —
and no client request fails along the way. And the delivery gate a person's version passes: a
worse one stopped with the reason, a better one approved, canaried and promoted, every step
delivered to a webhook receiver that checks its signature."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

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
    _wait_served(client, model, train)


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


class _Receiver(BaseHTTPRequestHandler):
    """Another system's webhook endpoint: it verifies each delivery's Standard Webhooks signature
    with its secret and keeps only what verifies (the example docs/delivery.md shows)."""

    secret = ""
    received: list[dict[str, Any]] = []
    refused = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            event = Verifier(type(self).secret).verify(body, dict(self.headers.items()))
        except WebhookVerificationError:
            type(self).refused += 1
            self.send_response(401)
        else:
            type(self).received.append(event)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


def _fleet_cli(home: Path, *args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from fleet_sdk.cli import app as cli

    result = CliRunner().invoke(cli, list(args), env={"FLEET_HOME": str(home), "COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.mark.extended  # CI's extended pass: keeps `make test` inside its budget
def test_a_gated_version_is_stopped_or_approved_canaried_and_promoted_and_announced_signed(
    stack: tuple[Stack, StackState, Path],
) -> None:
    _, _, home = stack
    client = _client(home)
    model, team = "gate-credit", "risk"
    rng = np.random.default_rng(7)
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{receiver.server_port}/hooks/risk"
        hook = client.add_webhook(team, url, ["model.registered", "version.checked", "rollout.updated"])
        _Receiver.secret = hook["secret"]

        train, holdout = population_a(400, rng), population_a(300, rng)
        client.create_dataset("gate-holdout", team=team)
        client.upload_dataset_version("gate-holdout", holdout.to_parquet(), row_count=len(holdout))
        # v1 learnt from f0 alone: it serves, and a new version must beat it on the holdout.
        weak = RandomForestClassifier(n_estimators=10, random_state=0).fit(
            train[FEATURES].assign(f1=0.0), train["label"]
        )
        client.register_sklearn(
            model,
            weak,
            train[FEATURES],
            train["label"],
            team=team,
            target_name="label",
            deploy_policy="direct",
        )
        _wait_served(client, model, train)
        client.monitor_config(model, analysis_min_requests=20, analysis_max_latency_ratio=10)
        client.set_gate(model, holdout_dataset="gate-holdout", target="label", approvals=1)

        # A worse version (inverted labels), registered as docs/ci.md's pipeline does: the command
        # fails (exit 1) with the failed check, and the version never takes traffic.
        artifact = home / "worse.skops"
        worse_model = RandomForestClassifier(n_estimators=10, random_state=0).fit(
            train[FEATURES], 1 - train["label"]
        )
        sio.dump(worse_model, artifact)
        example = json.dumps(train[FEATURES].head(1).to_dict("records")[0])
        code, shown = _fleet_cli(
            home,
            "register",
            str(artifact),
            "--name",
            model,
            "--team",
            team,
            "--task",
            "classification",
            "--example",
            example,
            "--deploy-policy",
            "gated",
            "--wait-checks",
            "120",
        )
        assert code == 1 and "worse: accuracy" in shown, shown
        worse = client.get_model(model)["latest_version"]
        delivery = client.version_checks(model, worse)
        assert delivery["state"] == "failed" and "worse: accuracy" in delivery["reason"], delivery
        code, shown = _fleet_cli(home, "versions", "checks", model, str(worse))
        assert code == 1 and "failed" in shown and "worse: accuracy" in shown, shown
        assert [a["version"] for a in client.routes(model)["table"]["arms"]] == [1]

        # A better one waits for one approval (not from its registrant), then canaries and promotes.
        better = client.register_sklearn(
            model,
            RandomForestClassifier(n_estimators=30, random_state=0).fit(train[FEATURES], train["label"]),
            train[FEATURES],
            train["label"],
            team=team,
            target_name="label",
            deploy_policy="gated",
        )["version"]
        delivery = client.wait_for_checks(model, better, timeout_s=120)
        assert delivery["state"] == "awaiting_approval", delivery
        code, shown = _fleet_cli(home, "versions", "checks", model, str(better))
        assert code == 3 and "awaiting_approval" in shown, shown
        with pytest.raises(FleetAPIError) as refused:
            client.review_version(model, better, "approve")  # the admin who registered it
        assert refused.value.status == 403
        bob = client.issue_token("bob", "deployer", [team])["token"]
        reviewer = Client(config=dataclasses.replace(ClientConfig.load(home / "config"), token=bob))
        assert reviewer.review_version(model, better, "approve", "holdout +20 points")["state"] == "ready"

        promoted = None
        deadline = time.monotonic() + 240
        while promoted is None and time.monotonic() < deadline:
            _labelled_traffic(client, model, rng, 10)
            promoted = next(
                (r for r in client.rollouts(model) if r["version"] == better and r["phase"] == "promoted"),
                None,
            )
        assert promoted is not None, client.rollouts(model)
        assert [(a["version"], a["weight"]) for a in client.routes(model)["table"]["arms"]] == [
            (better, 100.0)
        ]

        # The receiver got each of them signed, and verified every one.
        def got() -> list[tuple[str, Any]]:
            return [
                (e["type"].split(".")[2] + "." + e["type"].split(".")[3], e["data"])
                for e in _Receiver.received
            ]

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            kinds = [(k, d.get("version"), d.get("state") or d.get("phase")) for k, d in got()]
            if ("rollout.updated", better, "promoted") in kinds:
                break
            time.sleep(0.5)
        assert ("model.registered", worse, None) in kinds and ("model.registered", better, None) in kinds
        assert ("version.checked", worse, "failed") in kinds, kinds
        assert ("version.checked", better, "awaiting_approval") in kinds and (
            "version.checked",
            better,
            "ready",
        ) in kinds
        assert ("rollout.updated", better, "promoted") in kinds, kinds
        assert _Receiver.refused == 0
        # A delivery with a wrong signature is refused by the same receiver.
        forged = httpx.post(
            url,
            content=b'{"type":"io.modelfleet.rollout.updated.v1"}',
            headers={
                "webhook-id": "msg_x",
                "webhook-timestamp": str(int(time.time())),
                "webhook-signature": "v1,AAAA",
            },
        )
        assert forged.status_code == 401 and _Receiver.refused == 1
    finally:
        receiver.shutdown()


def _wait_served(client: Client, model: str, rows: pd.DataFrame) -> None:
    deadline = time.monotonic() + 180
    while True:
        try:
            client.predict(model, rows[FEATURES].head(1).to_dict("records"))
            return
        except (FleetAPIError, FleetUnavailable):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.mark.extended
def test_an_ab_test_is_decided_on_a_business_kpi_that_another_system_posts(
    stack: tuple[Stack, StackState, Path],
) -> None:
    """Synthetic shoppers with a known winner: v2's recommendations convert 35 % of its users,
    v1's 10 %. Each user is routed by their id (sticky A/B arms); the shop posts each conversion to
    /v1/outcomes by routing key, and the A/B test promotes v2 on that KPI alone."""
    _, _, home = stack
    client = _client(home)
    model, rng = "ab-shop", np.random.default_rng(11)
    _register_and_serve(client, model, rng)
    train = population_a(300, rng)
    client.register_sklearn(
        model,
        RandomForestClassifier(n_estimators=12, random_state=1).fit(train[FEATURES], train["label"]),
        train[FEATURES],
        train["label"],
        team="loop",
        target_name="label",
    )
    rollout = client.request_rollout(model, 2, "ab", kpi="conversion", duration_s=600)
    assert rollout["strategy"] == "ab", rollout
    conversion = {1: 0.10, 2: 0.35}
    served = {1: 0, 2: 0}
    promoted = None
    deadline = time.monotonic() + 300
    user = 0
    while promoted is None and time.monotonic() < deadline:
        for _ in range(20):
            user += 1
            key = f"user-{user}"
            answer = client.predict(model, population_a(1, rng)[FEATURES].to_dict("records"), routing_key=key)
            version = answer["version"]
            served[version] += 1
            client.record_outcome(
                model, "conversion", float(rng.random() < conversion[version]), routing_key=key
            )
        done = client.rollout(rollout["id"])
        promoted = done if done["phase"] == "promoted" else None
        assert done["phase"] in ("progressing", "promoted"), done
    assert promoted is not None, f"no decision after {user} users ({served}): {client.rollout(rollout['id'])}"
    assert min(served.values()) > 0.3 * user, f"the sticky 50/50 split: {served}"
    assert "conversion" in promoted["reason"] and "candidate wins" in promoted["reason"], promoted
    assert [(a["version"], a["weight"]) for a in client.routes(model)["table"]["arms"]] == [(2, 100.0)]
