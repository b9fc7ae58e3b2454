"""Bulk onboarding end to end (issue 13's acceptance): a manifest of 60 small scikit-learn models from
3 teams registers in ONE `fleet register --manifest` command against the embedded stack; the one bad
entry (a signature the model does not take) fails by name with a non-zero exit while the other 59
land and are deployed (policy `direct`); every one answers through the gateway; the deployer
reconfigures the shared pool a bounded number of times (counted on its /metrics, not timed); and a
re-run registers nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from fleet_sdk.client import Client
from fleet_sdk.config import ClientConfig
from fleet_sdk.stack import Stack
from support import backend
from support.onboarding import FEATURES, ROWS, skops_file

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.extended, pytest.mark.timeout(600)]

TEAMS = ["team-a", "team-b", "team-c"]
MODELS = 60
BAD = "onboard-27"
MAX_POOL_APPLIES = 8
"""Pool reconfigurations allowed for the 59 models of one command (without coalescing it is one per
model, 59). The count follows how the registrations trickle in, not the model count: a round covers
every registration recorded before it starts, the deployer records the next batches while a round
runs, and a round that follows another waits at least 3 s (longer after a long round) for more. The
first round creates the pool; the command registers 8 at a time over 10 to 50 s. Measured 2 and 2
(2026-12-02, loads ~5 and ~2, commands of 47 s and 15 s); 7, 8 and 18 before batches were recorded
while a round ran and before reconcile stopped re-deploying them one round each."""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("fleet")
    stack = Stack(home)
    stack.start(
        broker_port=0,
        ports={"registry": 0, "deployer": 0, "gateway": 0, "monitor": 0, "retrainer": 0},
        detach=True,
        log=lambda _: None,
        env={
            "FLEET_RATE_LIMIT_RPS": "2000",
            "FLEET_RATE_LIMIT_BURST": "4000",
            "FLEET_LOG_JSON": "false",
            **backend.stack_env(),
        },
    )
    try:
        yield home
    finally:
        stack.stop()


def manifest(folder: Path) -> Path:
    """60 entries from 3 teams, paths relative to the manifest; entry BAD declares two inputs for a
    model that takes three (its example rows fit its signature, not the model)."""
    entries = []
    for i in range(MODELS):
        name = f"onboard-{i:02d}"
        skops_file(folder / "models" / TEAMS[i % 3] / f"{name}.skops", seed=i)
        entry = {"name": name, "team": TEAMS[i % 3], "artifact": f"models/{TEAMS[i % 3]}/{name}.skops"}
        if name == BAD:
            entry["signature"] = {
                "inputs": [{"name": "f0", "type": "float"}, {"name": "f1", "type": "float"}]
            }
            entry["example_input"] = [{"f0": 0.1, "f1": 0.2}]
        entries.append(entry)
    path = folder / "fleet.yaml"
    defaults = {"deploy_policy": "direct", "example_input": ROWS, "tags": ["onboarding"]}
    path.write_text(yaml.safe_dump({"defaults": defaults, "models": entries}))
    return path


def fleet_register(home: Path, path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEET_HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1"}
    for key in ("FLEET_TOKEN", "FLEET_REGISTRY_URL", "FLEET_GATEWAY_URL", "FLEET_DEPLOYER_URL"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "fleet_sdk.cli", "register", "--manifest", str(path), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def pool_applies(client: Client) -> float:
    """``fleet_deployer_pool_applies_total`` on the deployer's /metrics, over every outcome."""
    text = httpx.get(f"{client.deployer_url}/metrics", timeout=10).text
    samples = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fleet_deployer_pool_applies_total")
    ]
    # A labelled counter has no sample before its first increment; its family is declared anyway.
    declared = "# TYPE fleet_deployer_pool_applies_total counter" in text
    assert declared, "the deployer exports no fleet_deployer_pool_applies_total (the coalescing change)"
    return sum(samples)


def wait_all_answer(client: Client, names: list[str], timeout_s: float = 240.0) -> dict[str, int]:
    """Predict once per model through the gateway until every one answers; their versions."""
    http = httpx.Client(
        base_url=client.gateway_url, headers={"Authorization": f"Bearer {client.token}"}, timeout=30
    )
    answered: dict[str, int] = {}
    last: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s

    def infer(name: str) -> None:
        response = http.post(f"/v2/models/{name}/infer", json={"inputs": ROWS[0]})
        if response.status_code == 200 and response.json()["predictions"] in ([0], [1]):
            answered[name] = int(response.headers["X-Fleet-Model-Version"])
        else:
            last[name] = f"{response.status_code} {response.text[:200]}"

    with http, ThreadPoolExecutor(8) as pool:
        while len(answered) < len(names):
            if time.monotonic() > deadline:
                waiting = sorted(set(names) - set(answered))
                raise AssertionError(
                    f"{len(waiting)} models never answered: {[(n, last.get(n)) for n in waiting[:5]]}"
                )
            list(pool.map(infer, [n for n in names if n not in answered]))
            if len(answered) < len(names):
                time.sleep(0.5)
    return answered


def test_sixty_models_from_three_teams_onboard_in_one_command(home: Path, tmp_path: Path) -> None:
    client = Client(config=ClientConfig.load(home / "config"))
    path = manifest(tmp_path)
    good = [f"onboard-{i:02d}" for i in range(MODELS) if f"onboard-{i:02d}" != BAD]
    before = pool_applies(client)

    started = time.monotonic()
    run = fleet_register(home, path)
    took = time.monotonic() - started
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert (report["registered"], report["unchanged"], report["failed"]) == (59, 0, 1), report
    failed = [r for r in report["results"] if r["status"] == "failed"]
    assert [r["name"] for r in failed] == [BAD]
    assert "does not run through the model" in failed[0]["reason"]
    assert f"failed: {BAD}" in run.stderr

    models = {m["name"]: m for m in client.list_models(tag="onboarding")}
    assert sorted(models) == good
    assert {m["team"] for m in models.values()} == set(TEAMS)
    assert all(m["latest_version"] == 1 for m in models.values())
    version = client.get_version("onboard-00", 1)
    assert [f["name"] for f in version["signature"]["inputs"]] == FEATURES
    assert version["task"] == "classification" and version["deploy_policy"] == "direct"

    # Every model answers through the gateway, from version 1.
    assert wait_all_answer(client, good) == dict.fromkeys(good, 1)

    # LEAD'S COALESCING (issue 13, item 1b): 59 registrations arriving together cost a bounded
    # number of pool reconfigurations, counted by fleet_deployer_pool_applies_total on the
    # deployer's /metrics; before coalescing it was one per model.
    applies = pool_applies(client) - before
    print(f"fleet register of {MODELS} entries: {took:.1f} s; pool reconfigurations: {applies:.0f}")
    assert 1 <= applies <= MAX_POOL_APPLIES, f"{applies:.0f} pool reconfigurations for 59 models"

    # Re-running the same manifest registers nothing: every good entry is unchanged at version 1,
    # the bad one fails again, and no version, event or pool reconfiguration follows.
    rollouts = len(client.rollouts())
    rerun = fleet_register(home, path)
    assert rerun.returncode == 1 and f"failed: {BAD}" in rerun.stderr
    again = json.loads(rerun.stdout)
    assert (again["registered"], again["unchanged"], again["failed"]) == (0, 59, 1), again
    assert {r["version"] for r in again["results"] if r["status"] == "unchanged"} == {1}
    assert all(m["latest_version"] == 1 for m in client.list_models(tag="onboarding"))
    # No redeploy: not one rollout more. (The pool's apply counter is not compared here: the
    # deployer's periodic reconcile may re-apply the pool once while the burst's last versions
    # were still deploying, whatever the re-run does.)
    assert len(client.rollouts()) == rollouts


def test_a_busy_onboarded_model_is_answered_by_the_gateway_itself(home: Path) -> None:
    """With the gateway's defaults, a pool model called a few times is loaded in the gateway process
    (``FLEET_LOCAL_MODELS_MB``) and answers the same from there as from the pool."""
    client = Client(config=ClientConfig.load(home / "config"))
    name = "onboard-03"
    wait_all_answer(client, [name])
    with httpx.Client(
        base_url=client.gateway_url, headers={"Authorization": f"Bearer {client.token}"}, timeout=30
    ) as http:
        first = http.post(f"/v2/models/{name}/infer", json={"inputs": ROWS[:4]}).json()["predictions"]
        deadline = time.monotonic() + 60
        while True:
            assert (
                http.post(f"/v2/models/{name}/infer", json={"inputs": ROWS[:4]}).json()["predictions"]
                == first
            )
            listing = http.get("/v1/local-models").json()
            local = {m["key"]: m for m in listing["models"]}
            if f"{name}:1" in local and local[f"{name}:1"]["calls"] >= 1:
                break
            assert time.monotonic() < deadline, f"{name} never served by the gateway itself: {listing}"
            time.sleep(0.2)
        assert 0 < local[f"{name}:1"]["bytes"] <= listing["budget_bytes"]
        assert listing["local_calls"] >= 1
