"""Serving end to end: the real embedded broker, a local Ray head, and registry, deployer and gateway
as processes — what an application and an operator see.

One stack serves the whole module (starting Ray and three services is the slow part); every test
uses its own model names. The broker-outage test stops the broker and runs last.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from fleet_core.auth import Role, TokenAuthority
from fleet_core.events import Topic
from fleet_sdk.client import Client
from fleet_sdk.config import ClientConfig
from fleet_sdk.embedded_ray import RAY_CLIENT_ENV
from fleet_sdk.errors import FleetAPIError
from fleet_sdk.stack import Stack, StackState
from support import backend
from support.kafka import read_topic

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

IDLE_UNLOAD_S = 6
FEATURES = ["f0", "f1", "f2", "f3"]


class Fleet:
    """The running stack, an admin client and raw HTTP access to the gateway."""

    def __init__(self, home: Path, stack: Stack, state: StackState) -> None:
        self.home, self.stack, self.state = home, stack, state
        self.config = ClientConfig.load(home / "config")
        self.client = Client(config=self.config)
        self.gateway_url = self.client.gateway_url
        self.http = httpx.Client(
            base_url=self.gateway_url, headers={"Authorization": f"Bearer {self.config.token}"}, timeout=60
        )
        self.secret = stack.jwt_secret()

    @property
    def bootstrap(self) -> str:
        return self.state.env["FLEET_KAFKA_BOOTSTRAP"]

    def token(self, role: Role, teams: list[str], subject: str = "someone") -> str:
        token, _, _ = TokenAuthority(self.secret).issue(subject, role, teams)
        return token

    def infer(self, model: str, row: dict[str, Any], **kw: Any) -> httpx.Response:
        return self.http.post(f"/v2/models/{model}/infer", json={"inputs": row}, **kw)

    def served_version(self, model: str, row: dict[str, Any], **kw: Any) -> int:
        response = self.infer(model, row, **kw)
        assert response.status_code == 200, response.text
        return int(response.headers["X-Fleet-Model-Version"])

    def wait_served(self, model: str, version: int, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            response = self.infer(model, ROW)
            if response.status_code == 200 and response.headers["X-Fleet-Model-Version"] == str(version):
                return
            last = f"{response.status_code} {response.text[:300]}"
            time.sleep(0.5)
        raise AssertionError(f"{model} v{version} not served within {timeout_s}s: {last}")


ROW = {"f0": 0.1, "f1": -0.3, "f2": 1.2, "f3": 0.0}


def _training(seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(300, 4)), columns=FEATURES)
    y = pd.Series((X["f0"] + X["f1"] * (1 if seed % 2 else -1) > 0).astype(int), name="label")
    return X, y


def register(fleet: Fleet, name: str, *, seed: int = 0, policy: str = "none", **kw: Any) -> int:
    X, y = _training(seed)
    estimator = LogisticRegression().fit(X, y)
    version = fleet.client.register_sklearn(
        name, estimator, X, y, team="serving", deploy_policy=policy, range_margin=2.0, **kw
    )
    return int(version["version"])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    home = tmp_path_factory.mktemp("fleet")
    stack = Stack(home)
    state = stack.start(
        broker_port=0,
        ports={"registry": 0, "deployer": 0, "gateway": 0, "monitor": 0, "retrainer": 0},
        detach=True,
        log=lambda _: None,
        env={
            "FLEET_IDLE_UNLOAD_S": str(IDLE_UNLOAD_S),
            # These tests are about what the pool and Ray do with a model's calls: the gateway
            # answers none itself (tests/e2e/test_bulk_onboarding.py runs with its default).
            "FLEET_LOCAL_MODELS_MB": "0",
            "FLEET_RATE_LIMIT_RPS": "2000",
            "FLEET_RATE_LIMIT_BURST": "4000",
            "FLEET_LOG_JSON": "false",
            **backend.stack_env(),
        },
    )
    try:
        yield Fleet(home, stack, state)
    finally:
        stack.stop()


def test_registered_with_direct_policy_is_served_with_no_further_action(fleet: Fleet) -> None:
    version = register(fleet, "direct-churn", policy="direct")
    fleet.wait_served("direct-churn", version)

    response = fleet.infer("direct-churn", ROW)
    body = response.json()
    assert body["model"] == "direct-churn" and body["version"] == version
    assert body["predictions"] in ([0], [1])
    assert response.headers["X-Request-ID"]

    oip = fleet.http.post(
        "/v2/models/direct-churn/infer",
        json={
            "inputs": [
                {"name": f, "shape": [2], "datatype": "FP64", "data": [ROW[f], -ROW[f]]} for f in FEATURES
            ]
        },
    )
    assert oip.status_code == 200, oip.text
    assert oip.json()["model_name"] == "direct-churn"
    assert len(oip.json()["outputs"][0]["data"]) == 2


def test_split_weights_hold_and_routing_keys_are_sticky(fleet: Fleet) -> None:
    v1 = register(fleet, "split-churn", seed=0, policy="direct")
    v2 = register(fleet, "split-churn", seed=1)
    fleet.wait_served("split-churn", v1)
    fleet.client.set_routes("split-churn", [{"version": v1, "weight": 70}, {"version": v2, "weight": 30}])
    fleet.wait_served("split-churn", v2, timeout_s=120)  # v2 is loaded and takes some traffic

    with ThreadPoolExecutor(8) as pool:
        versions = list(pool.map(lambda _: fleet.served_version("split-churn", ROW), range(2000)))
    share = collections.Counter(versions)[v2] / len(versions) * 100
    assert 27 <= share <= 33, f"v2 got {share:.1f}% of 2,000 requests, configured 30%"

    fleet.client.set_routes(
        "split-churn",
        [{"version": v1, "weight": 50, "sticky": True}, {"version": v2, "weight": 50, "sticky": True}],
    )
    time.sleep(1.0)
    seen: dict[str, set[int]] = collections.defaultdict(set)
    for i in range(40):
        for _ in range(5):
            key = f"user-{i}"
            seen[key].add(fleet.served_version("split-churn", ROW, headers={"X-Fleet-Routing-Key": key}))
    assert all(len(v) == 1 for v in seen.values()), {k: v for k, v in seen.items() if len(v) > 1}
    assert {next(iter(v)) for v in seen.values()} == {v1, v2}, "both versions get some keys"


def test_shadow_gets_copies_while_the_client_gets_the_primary_answer(fleet: Fleet) -> None:
    v1 = register(fleet, "shadow-churn", seed=0, policy="direct")
    v2 = register(fleet, "shadow-churn", seed=1)
    fleet.wait_served("shadow-churn", v1)
    fleet.client.set_routes(
        "shadow-churn", [{"version": v1, "weight": 100}, {"version": v2, "weight": 0, "mode": "shadow"}]
    )
    time.sleep(1.0)
    primary = [fleet.served_version("shadow-churn", ROW) for _ in range(30)]
    assert set(primary) == {v1}

    # Shadow copies are fire-and-forget and logs are sent in batches: poll the topic for them.
    deadline = time.monotonic() + 60
    while True:
        records = asyncio.run(
            read_topic(fleet.bootstrap, Topic.INFERENCE_LOGGED.value, expect=1, timeout_s=30)
        )
        mine = [d for d in (json.loads(r.value)["data"] for r in records) if d["model"] == "shadow-churn"]
        shadows = [d for d in mine if d["arm"] == "shadow"]
        if len(shadows) >= 30 or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    shadow_metrics = [ln for ln in fleet.http.get("/metrics").text.splitlines() if 'arm="shadow"' in ln]
    assert len(shadows) >= 30 and {d["version"] for d in shadows} == {v2}, (
        f"every request was mirrored to v2: {len(mine)} records of the model, {len(shadows)} shadow; "
        f"gateway metrics: {shadow_metrics[:6]}"
    )
    assert {d["version"] for d in mine if d["arm"] == "primary"} == {v1}


def test_rollback_takes_effect_on_the_next_request(fleet: Fleet) -> None:
    v1 = register(fleet, "rollback-churn", seed=0, policy="direct")
    fleet.wait_served("rollback-churn", v1)
    v2 = register(fleet, "rollback-churn", seed=1, policy="direct")
    fleet.wait_served("rollback-churn", v2)

    fleet.client.rollback("rollback-churn")
    assert fleet.served_version("rollback-churn", ROW) == v1


def test_blue_green_switch_under_constant_load_loses_no_request(fleet: Fleet) -> None:
    blue = register(fleet, "bluegreen-churn", seed=0, policy="direct")
    fleet.wait_served("bluegreen-churn", blue)
    green = register(fleet, "bluegreen-churn", seed=1)
    statuses: collections.Counter[int] = collections.Counter()
    versions: list[int] = []
    stop = time.monotonic() + 120

    def load() -> None:
        with httpx.Client(base_url=fleet.gateway_url, headers=fleet.http.headers, timeout=30) as http:
            while time.monotonic() < stop:
                response = http.post("/v2/models/bluegreen-churn/infer", json={"inputs": ROW})
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    versions.append(int(response.headers["X-Fleet-Model-Version"]))
                if versions[-40:].count(green) == 40:
                    return  # green has served 40 requests in a row: the switch is behind us

    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(load) for _ in range(4)]
        time.sleep(1.0)  # the load is on before the rollout starts
        rollout = fleet.client.request_rollout("bluegreen-churn", green, "blue_green", duration_s=600)
        for future in running:
            future.result()
    assert rollout["phase"] == "progressing", rollout
    assert set(statuses) == {200}, f"non-2xx answers during the switch: {dict(statuses)}"
    assert versions[0] == blue and versions[-1] == green
    switched = versions.index(green)
    assert set(versions[switched:]) == {green}, "after the switch every request reaches green"
    deployments = {
        d["version"]: d["state"] for d in fleet.client.deployment("bluegreen-churn")["deployments"]
    }
    assert deployments[blue] == "ready", "blue stays up for the rollback window"


def test_bad_requests_are_refused_with_problem_details(fleet: Fleet) -> None:
    v1 = register(fleet, "strict-churn", policy="direct")
    fleet.wait_served("strict-churn", v1)

    unknown = fleet.infer("no-such-model", ROW)
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert (
        fleet.http.post("/v2/models/strict-churn/versions/99/infer", json={"inputs": ROW}).status_code == 404
    )

    wrong_type = fleet.infer("strict-churn", {**ROW, "f2": "high"})
    assert wrong_type.status_code == 422
    assert "inputs.f2" in wrong_type.text
    missing = fleet.infer("strict-churn", {k: v for k, v in ROW.items() if k != "f1"})
    assert missing.status_code == 422 and "inputs.f1" in missing.text
    out_of_range = fleet.infer("strict-churn", {**ROW, "f3": 1e9})
    assert out_of_range.status_code == 422 and "inputs.f3" in out_of_range.text

    huge = fleet.http.post(
        "/v2/models/strict-churn/infer",
        content=b'{"inputs": [' + b",".join([json.dumps(ROW).encode()] * 400_000) + b"]}",
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413

    assert (
        httpx.post(f"{fleet.gateway_url}/v2/models/strict-churn/infer", json={"inputs": ROW}).status_code
        == 401
    )
    bogus = {"Authorization": "Bearer not-a-token"}
    assert fleet.infer("strict-churn", ROW, headers=bogus).status_code == 401
    other_team = {"Authorization": f"Bearer {fleet.token(Role.VIEWER, ['finance'])}"}
    assert fleet.infer("strict-churn", ROW, headers=other_team).status_code == 403
    own_team = {"Authorization": f"Bearer {fleet.token(Role.VIEWER, ['serving'])}"}
    assert fleet.infer("strict-churn", ROW, headers=own_team).status_code == 200


def test_dedicated_deployment_applies_its_quota_in_ray(fleet: Fleet) -> None:
    version = register(fleet, "heavy-churn")
    quota = {
        "num_cpus": 0.25,
        "memory_mb": 256,
        "min_replicas": 1,
        "max_replicas": 2,
        "target_ongoing_requests": 3,
    }
    fleet.client.deploy("heavy-churn", version, quota=quota)
    fleet.wait_served("heavy-churn", version)

    shown = fleet.client.deployment("heavy-churn")
    text = json.dumps(shown)
    dedicated = next(d for d in shown["deployments"] if d["version"] == version)
    assert dedicated["placement"]["kind"] == "dedicated"
    ray_view = dedicated["ray"]
    assert '"num_cpus": 0.25' in json.dumps(ray_view) or "0.25" in text
    assert ray_view["autoscaling"]["min_replicas"] == 1 and ray_view["autoscaling"]["max_replicas"] == 2


def test_idle_model_is_unloaded_and_its_next_request_still_succeeds(fleet: Fleet) -> None:
    version = register(fleet, "sleepy-churn", policy="direct")
    fleet.wait_served("sleepy-churn", version)
    # A model that serves is shown active once its requests reach the deployer (inference.logged);
    # on a loaded box that round trip can outlast the short idle window this test runs with.
    active_by = time.monotonic() + 30
    while True:
        assert fleet.served_version("sleepy-churn", ROW) == version
        listed = {(d["model"], d["version"]): d for d in fleet.client.deployments()}
        if listed[("sleepy-churn", version)]["idle"] is False:
            break
        assert time.monotonic() < active_by, "a model that serves requests is shown active"
        time.sleep(0.5)

    deadline = time.monotonic() + IDLE_UNLOAD_S + 30
    while time.monotonic() < deadline:
        listed = {(d["model"], d["version"]): d for d in fleet.client.deployments()}
        if listed[("sleepy-churn", version)]["idle"]:
            break
        time.sleep(1.0)
    assert listed[("sleepy-churn", version)]["idle"], "no request for the idle time: shown idle"
    time.sleep(3)  # the replica's own idle sweep runs every second or two
    assert f"sleepy-churn:{version}" not in pool_loaded(fleet), "the pool unloaded it"

    assert fleet.served_version("sleepy-churn", ROW) == version
    # Asking the replicas takes a driver start, which on a loaded box can outlast the short idle
    # window; requests keep coming meanwhile, as they would for a model in use again.
    stop = threading.Event()

    def keep_calling() -> None:
        while not stop.wait(0.5):
            fleet.served_version("sleepy-churn", ROW)

    caller = threading.Thread(target=keep_calling, daemon=True)
    caller.start()
    try:
        assert f"sleepy-churn:{version}" in pool_loaded(fleet), "the next request loaded it again"
    finally:
        stop.set()
        caller.join(timeout=30)


POOL_STATS = """
import json, sys, ray
from ray import serve
ray.init(address=sys.argv[1], namespace="modelfleet", log_to_driver=False)
handle = serve.get_deployment_handle("ModelPool", app_name="fleet-pool")
loaded = set()
for _ in range(6):  # calls spread over the pool's replicas
    stats = handle.stats.remote().result(timeout_s=60)
    loaded |= {m["key"] for m in stats.model_dump()["loaded"]}
print(json.dumps(sorted(loaded)))
"""


def pool_loaded(fleet: Fleet) -> list[str]:
    """What the pool's replicas hold, asked through Ray Serve itself (a separate driver process)."""
    assert fleet.state.ray is not None
    out = subprocess.run(
        [sys.executable, "-c", POOL_STATS, fleet.state.ray.url.removeprefix("ray://")],
        env={**os.environ, **RAY_CLIENT_ENV},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_deployer_restart_keeps_serving_and_resumes(fleet: Fleet) -> None:
    v1 = register(fleet, "restart-churn", seed=0, policy="direct")
    fleet.wait_served("restart-churn", v1)

    deployer = next(c for c in fleet.state.services if c.name == "deployer")
    from fleet_sdk.stack import terminate

    terminate(deployer.pid, 15.0)
    # The gateway keeps answering from its route table and Ray Serve while the deployer is away.
    assert all(fleet.served_version("restart-churn", ROW) == v1 for _ in range(20))
    fleet.stack.restart_service("deployer")
    fleet.state = fleet.stack.state() or fleet.state

    deployments = {(d["model"], d["version"]): d for d in fleet.client.deployments()}
    assert deployments[("restart-churn", v1)]["state"] == "ready"
    v2 = register(fleet, "restart-churn", seed=1, policy="direct")
    fleet.wait_served("restart-churn", v2)
    fleet.client.rollback("restart-churn")
    assert fleet.served_version("restart-churn", ROW) == v1


@pytest.mark.extended
def test_tritonclient_grpc_calls_the_gateways_grpc_port(fleet: Fleet) -> None:
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    version = register(fleet, "grpc-churn", policy="direct")
    fleet.wait_served("grpc-churn", version)
    gateway = next(c for c in fleet.state.services if c.name == "gateway")
    assert gateway.grpc_url and gateway.grpc_url.startswith("grpc://127.0.0.1:")
    status = {row["name"]: row for row in fleet.stack.status()}
    assert status["gateway-grpc"]["state"] == "healthy" and status["gateway-grpc"]["url"] == gateway.grpc_url

    client = triton.InferenceServerClient(gateway.grpc_url.removeprefix("grpc://"))
    headers = {"authorization": f"Bearer {fleet.token(Role.VIEWER, ['serving'])}"}
    try:
        assert client.is_server_live() and client.is_server_ready()
        # Answering already; "ready" follows once the gateway's route book has the deployer's state.
        deadline = time.monotonic() + 90
        while not client.is_model_ready("grpc-churn", headers=headers):
            over_http = fleet.http.get("/v2/models/grpc-churn/ready")
            assert time.monotonic() < deadline, (
                f"never ready; over HTTP: {over_http.status_code} {over_http.text}"
            )
            time.sleep(1)
        assert fleet.http.get("/v2/models/grpc-churn/ready").status_code == 200
        meta = client.get_model_metadata("grpc-churn", headers=headers)
        assert [t.name for t in meta.inputs] == FEATURES
        rows = np.array([[ROW[f] for f in FEATURES], [-1.0, 2.0, 0.5, 0.0]])
        matrix = triton.InferInput("input-0", list(rows.shape), "FP64")
        matrix.set_data_from_numpy(rows)
        result = client.infer("grpc-churn", [matrix], headers=headers)
        assert result.get_response().model_version == str(version)
        [output] = result.get_response().outputs
        over_http = fleet.http.post(
            "/v2/models/grpc-churn/infer",
            json={"inputs": [dict(zip(FEATURES, r, strict=True)) for r in rows]},
        )
        assert result.as_numpy(output.name).tolist() == over_http.json()["predictions"]
        with pytest.raises(InferenceServerException) as caught:
            client.infer(
                "grpc-churn",
                [matrix],
                headers={"authorization": f"Bearer {fleet.token(Role.VIEWER, ['other'])}"},
            )
        assert caught.value.status() == "StatusCode.PERMISSION_DENIED"
    finally:
        client.close()


@pytest.mark.extended
def test_tritonclient_loads_lists_and_unloads_a_model_through_the_repository_extension(fleet: Fleet) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    version = register(fleet, "repo-churn")  # registered, not deployed
    deployer = {"Authorization": f"Bearer {fleet.token(Role.DEPLOYER, ['serving'])}"}
    viewer = {"Authorization": f"Bearer {fleet.token(Role.VIEWER, ['serving'])}"}
    other = {"Authorization": f"Bearer {fleet.token(Role.DEPLOYER, ['elsewhere'])}"}
    client = triton.InferenceServerClient(fleet.gateway_url.removeprefix("http://"), network_timeout=180)
    try:
        assert "model_repository" in client.get_server_metadata()["extensions"]
        with pytest.raises(InferenceServerException) as refused:
            client.load_model("repo-churn", headers=viewer)
        assert refused.value.status() == "403"

        client.load_model("repo-churn", headers=deployer)
        entry = {"name": "repo-churn", "version": str(version), "state": "READY", "reason": ""}
        assert entry in client.get_model_repository_index(headers=viewer)
        assert client.is_model_ready("repo-churn", headers=viewer)
        assert fleet.served_version("repo-churn", ROW) == version  # served at once, on Ray
        assert all(m["name"] != "repo-churn" for m in client.get_model_repository_index(headers=other))

        with pytest.raises(InferenceServerException) as refused:
            client.unload_model("repo-churn", headers=other)
        assert refused.value.status() == "403"
        client.unload_model("repo-churn", headers=deployer)
        assert not client.is_model_ready("repo-churn", headers=viewer)
        assert fleet.infer("repo-churn", ROW).status_code == 404
        unloaded = {**entry, "state": "UNAVAILABLE", "reason": "unloaded"}
        assert unloaded in client.get_model_repository_index(headers=viewer)
    finally:
        client.close()


def test_zz_gateway_keeps_answering_with_the_broker_down(fleet: Fleet) -> None:
    v1 = register(fleet, "outage-churn", policy="direct")
    fleet.wait_served("outage-churn", v1)
    from fleet_sdk.stack import terminate

    def shed() -> float:
        metrics = fleet.http.get("/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("fleet_gateway_inference_logs_shed_total")
        )

    before = shed()
    terminate(fleet.state.broker.pid, 15.0)
    statuses = [fleet.infer("outage-churn", ROW).status_code for _ in range(300)]
    assert statuses == [200] * 300
    deadline = time.monotonic() + 60
    while shed() <= before and time.monotonic() < deadline:
        fleet.infer("outage-churn", ROW)
        time.sleep(0.2)
    assert shed() > before, "log records that could not be sent are shed and counted"
    # Feedback for a request the gateway served cannot be published either: a 503 to retry.
    answered = fleet.infer("outage-churn", ROW)
    with pytest.raises(FleetAPIError) as refused:
        fleet.client.feedback(
            answered.headers["x-request-id"],
            "outage-churn",
            [1],
            receipt=answered.headers["x-fleet-feedback-receipt"],
        )
    assert refused.value.status == 503
