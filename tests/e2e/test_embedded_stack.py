"""The embedded stack as a user runs it: `fleet up --detach`, the CLI in another process, `fleet down`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def fleet(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEET_HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("FLEET_TOKEN", None)
    env.pop("FLEET_REGISTRY_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "fleet_sdk.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def stack_home(tmp_path: Path):
    home = tmp_path / "fleet"
    yield home
    fleet(home, "down", timeout=60)


def test_up_detach_serves_the_cli_from_another_process_and_down_stops_it(stack_home: Path) -> None:
    started = fleet(stack_home, "up", "--detach", "--broker-port", "0", "--registry-port", "0")
    assert started.returncode == 0, started.stderr + started.stdout
    config = (stack_home / "config").read_text()
    assert "token = " in config and "registry_url" in config

    status = fleet(stack_home, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    components = {c["name"]: c for c in json.loads(status.stdout)}
    assert set(components) == {"broker", "registry"}
    assert all(c["state"] == "healthy" for c in components.values())

    created = fleet(stack_home, "models", "create", "churn", "--team", "growth")
    assert created.returncode == 0, created.stderr
    listed = fleet(stack_home, "models", "list", "--json")
    assert [m["name"] for m in json.loads(listed.stdout)] == ["churn"]

    # A second `up` on the same home refuses instead of starting a second stack.
    again = fleet(stack_home, "up", "--detach", "--broker-port", "0", "--registry-port", "0")
    assert again.returncode == 1 and "already running" in again.stderr

    registry_url = components["registry"]["url"]
    down = fleet(stack_home, "down")
    assert down.returncode == 0 and "registry" in down.stdout and "broker" in down.stdout
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{registry_url}/healthz", timeout=2)
    assert fleet(stack_home, "status").returncode == 1


def test_demo_registers_three_models_with_metrics_and_lineage(stack_home: Path) -> None:
    started = fleet(stack_home, "up", "--detach", "--broker-port", "0", "--registry-port", "0")
    assert started.returncode == 0, started.stderr
    demo = fleet(stack_home, "demo", "--no-keep-running", timeout=300)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "Models (3)" in demo.stdout

    models = json.loads(fleet(stack_home, "models", "list", "--json").stdout)
    assert sorted(m["name"] for m in models) == ["breast-cancer", "diabetes-progression", "iris-species"]
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
