"""The embedded stack as a user runs it: `fleet up --detach`, `make demo`'s story, the CLI in another
process, `fleet down`. One stack for the whole story: starting Ray and five processes is the slow part."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support import backend

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


# `fleet up` runs the services with these: the demo's canary moves on every 10 s, not every minute.
PACE = {"FLEET_CANARY_STEP_INTERVAL_S": "10", "FLEET_ANALYSIS_INTERVAL_S": "2"}
# In the production pass (support.backend) the stack's services keep their state on PostgreSQL and
# S3; `fleet up` is the embedded stack, so it stays in embedded mode, on that storage.
STORAGE: dict[Path, dict[str, str]] = {}


def fleet(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    if home not in STORAGE:  # one set of databases per stack home
        STORAGE[home] = {k: v for k, v in backend.stack_env().items() if k != "FLEET_MODE"}
    storage = STORAGE[home]
    env = {**os.environ, **PACE, **storage, "FLEET_HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1"}
    for key in ("FLEET_TOKEN", "FLEET_REGISTRY_URL", "FLEET_GATEWAY_URL", "FLEET_DEPLOYER_URL"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "fleet_sdk.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


FREE_PORTS = (
    *("--broker-port", "0", "--registry-port", "0", "--deployer-port", "0"),
    *("--gateway-port", "0", "--monitor-port", "0", "--retrainer-port", "0"),
)


@pytest.fixture
def stack_home(tmp_path: Path):
    home = tmp_path / "fleet"
    yield home
    fleet(home, "down", timeout=60)


def test_up_demo_predict_and_down_as_a_user_does(stack_home: Path) -> None:
    started = fleet(stack_home, "up", "--detach", *FREE_PORTS)
    assert started.returncode == 0, started.stderr + started.stdout
    config = (stack_home / "config").read_text()
    assert "token = " in config and "registry_url" in config and "gateway_url" in config

    status = fleet(stack_home, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    components = {c["name"]: c for c in json.loads(status.stdout)}
    assert set(components) == {
        "broker",
        "ray",
        "registry",
        "deployer",
        "gateway",
        "gateway-grpc",
        "monitor",
        "retrainer",
    }
    assert all(c["state"] == "healthy" for c in components.values()), components

    # A second `up` on the same home refuses instead of starting a second stack.
    again = fleet(stack_home, "up", "--detach", *FREE_PORTS)
    assert again.returncode == 1 and "already running" in again.stderr

    # The demo registers three models with policy `direct`, which puts them live, then sends traffic.
    demo = fleet(stack_home, "demo", "--no-keep-running", timeout=600)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "Models (4)" in demo.stdout and "Per-model latency" in demo.stdout
    # ... then shifts one model's inputs: the monitor names the moved features and raises an alert.
    assert "data drift per feature" in demo.stdout, demo.stdout[-3000:]
    # ... and closes the loop: drift on credit-risk, a retraining job, a canary, v2 promoted.
    assert "credit-risk v2: lineage" in demo.stdout, demo.stdout[-4000:]
    v2 = json.loads(fleet(stack_home, "versions", "show", "credit-risk", "2", "--json").stdout)
    assert (v2["origin"], v2["parent_version"]) == ("retrain", 1)
    jobs = json.loads(fleet(stack_home, "jobs", "list", "--model", "credit-risk", "--json").stdout)
    assert [j["state"] for j in jobs] == ["registered"]
    alerts = json.loads(fleet(stack_home, "alerts", "--state", "firing", "--kind", "drift", "--json").stdout)
    iris = [a for a in alerts if a["model"] == "iris-species" and a["name"] == "data_drift"]
    assert len(iris) == 1 and "petal" in iris[0]["summary"]
    overview = json.loads(fleet(stack_home, "monitor", "overview", "--json").stdout)
    served = {m["name"]: m for m in overview["models"]}
    assert set(served) == {"breast-cancer", "credit-risk", "diabetes-progression", "iris-species"}
    # Every model served traffic (the first ones minutes ago, outside the live window by now).
    assert all(m["last_request_at"] is not None for m in served.values())
    assert "data" in served["iris-species"]["drifting"]
    dashboard = httpx.get(f"{components['monitor']['url']}/", timeout=5)
    assert dashboard.status_code == 200 and "text/html" in dashboard.headers["content-type"]

    models = json.loads(fleet(stack_home, "models", "list", "--json").stdout)
    names = ["breast-cancer", "credit-risk", "diabetes-progression", "iris-species"]
    assert sorted(m["name"] for m in models) == names
    models = [m for m in models if m["name"] != "credit-risk"]  # the loop's model has its own checks above
    for m in models:
        assert m["aliases"] == {"champion": 1}
        version = json.loads(fleet(stack_home, "versions", "show", m["name"], "1", "--json").stdout)
        assert version["reference_profile"]["row_count"] > 0
        assert version["recipe"]["kind"] == "sklearn"
        assert version["dataset_version"]["dataset"] == f"{m['name']}-training"
        expected = {"rmse", "mae", "r2"} if m["name"] == "diabetes-progression" else {"accuracy", "f1"}
        assert expected <= set(version["metrics"])
        lineage = json.loads(fleet(stack_home, "versions", "lineage", m["name"], "1", "--json").stdout)
        assert lineage["dataset_version"]["content_hash"] == version["dataset_version"]["content_hash"]

    # Another shell: the CLI predicts through the gateway and lists what is deployed.
    row = {
        "sepal_length_cm": 5.1,
        "sepal_width_cm": 3.5,
        "petal_length_cm": 1.4,
        "petal_width_cm": 0.2,
    }
    predicted = fleet(stack_home, "predict", "iris-species", "--json", json.dumps(row))
    assert predicted.returncode == 0, predicted.stderr
    answer = json.loads(predicted.stdout)
    assert answer["version"] == 1 and answer["predictions"] == [0]
    bad = fleet(
        stack_home, "predict", "iris-species", "--json", json.dumps({**row, "petal_width_cm": "wide"})
    )
    assert bad.returncode == 1 and "petal_width_cm" in bad.stderr

    deployments = json.loads(fleet(stack_home, "deployments", "list", "--json").stdout)
    assert {(d["model"], d["version"]) for d in deployments} >= {(m["name"], 1) for m in models}
    assert all(d["state"] == "ready" for d in deployments)

    registry_url = components["registry"]["url"]
    gateway_url = components["gateway"]["url"]
    down = fleet(stack_home, "down")
    assert down.returncode == 0
    assert {"registry", "deployer", "gateway", "monitor", "retrainer", "ray", "broker"} <= set(
        down.stdout.replace(",", " ").split()
    )
    for url in (registry_url, gateway_url):
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz", timeout=2)
    assert fleet(stack_home, "status").returncode == 1
