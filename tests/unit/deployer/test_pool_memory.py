"""The pool by memory, from the deployer's side: a version too large for a pool replica's model
budget is refused from the pool with a reason (it needs a dedicated deployment), stays out of the
pool's config through reconciles, and the pool view (``GET /v1/pool``, ``fleet deployments show
fleet-pool``) shows each replica's budget and loaded versions, a viewer only its own teams'."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleet_core.auth import Role
from fleet_core.serving import POOL_APP, PoolSizing
from fleet_sdk.cli import app as cli
from support.cli_output import printed_json
from support.deployer import DeployerHarness, FakeServingControl
from support.http import serving as listening

GB = 2**30


async def test_a_version_too_large_for_the_pool_fails_naming_a_dedicated_deployment(
    deployer: DeployerHarness, serving: FakeServingControl
) -> None:
    budget = PoolSizing().model_budget_bytes
    assert budget is not None and budget < 2 * GB
    await deployer.register("churn", 1, deploy_policy="direct")
    await deployer.register("giant", 1, team="ml", deploy_policy="direct", size_bytes=2 * GB)
    assert set(serving.apps[POOL_APP].config.models) == {"churn:1"}, "never put in the pool's config"

    listed = (await deployer.client.get("/v1/deployments", headers=deployer.auth())).json()
    items = listed["items"] if isinstance(listed, dict) else listed
    giant = next(d for d in items if d["model"] == "giant")
    assert giant["state"] == "failed"
    assert "giant:1 is too large for the shared pool" in giant["error"]
    assert "dedicated deployment" in giant["error"] and "quota" in giant["error"]
    r = await deployer.client.post(
        "/v1/deployments", json={"model": "giant", "version": 1}, headers=deployer.auth()
    )
    assert r.status_code == 502 and "dedicated deployment" in r.json()["detail"]

    # A restart's reconcile re-applies the pool: the refused version stays failed and out of it.
    await deployer.controller.reconcile(initial=True)
    assert set(serving.apps[POOL_APP].config.models) == {"churn:1"}
    view = (await deployer.client.get("/v1/deployments/giant", headers=deployer.auth())).json()
    assert [d["state"] for d in view["deployments"]] == ["failed"]

    # With a quota it gets its own deployment instead.
    quota = {"num_cpus": 0.5, "memory_mb": 4096}
    r = await deployer.client.post(
        "/v1/deployments", json={"model": "giant", "version": 1, "quota": quota}, headers=deployer.auth()
    )
    assert r.status_code == 201, r.text
    assert "fleet-giant-v1" in serving.apps


async def test_the_pool_view_shows_budgets_and_bytes_and_a_viewer_only_its_teams(
    deployer: DeployerHarness,
) -> None:
    await deployer.register("churn", 1, team="fraud", deploy_policy="direct", size_bytes=3 * 2**20)
    await deployer.register("ads", 1, team="growth", deploy_policy="direct")
    await deployer.register("giant", 1, team="fraud", deploy_policy="direct", size_bytes=2 * GB)

    admin = (await deployer.client.get("/v1/pool", headers=deployer.auth())).json()
    assert admin["connected"] and admin["memory_mb"] == PoolSizing().memory_mb
    assert admin["model_budget_bytes"] == PoolSizing().model_budget_bytes
    (replica,) = admin["replicas"]
    assert {m["key"]: m["bytes"] for m in replica["loaded"]} == {"ads:1": 64 * 2**10, "churn:1": 3 * 2**20}
    assert replica["loaded_bytes"] == 3 * 2**20 + 64 * 2**10 and replica["models_loaded"] == 2
    assert [(x["model"], x["team"]) for x in admin["refused"]] == [("giant", "fraud")]
    assert admin["configured"] == 2

    viewer = deployer.auth(Role.VIEWER, ["growth"])
    seen = (await deployer.client.get("/v1/pool", headers=viewer)).json()
    (replica,) = seen["replicas"]
    assert [m["key"] for m in replica["loaded"]] == ["ads:1"]
    assert replica["models_loaded"] == 2, "a replica's totals name no model: shown to all"
    assert seen["refused"] == [] and seen["configured"] == 1
    assert (await deployer.client.get("/v1/pool")).status_code == 401


async def test_fleet_deployments_show_fleet_pool_prints_the_pool(
    deployer: DeployerHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await deployer.register("churn", 1, team="fraud", deploy_policy="direct", size_bytes=3 * 2**20)
    await deployer.register("giant", 1, team="fraud", deploy_policy="direct", size_bytes=2 * GB)
    token = deployer.auth(Role.VIEWER, ["fraud"])["Authorization"].removeprefix("Bearer ")
    async with listening(deployer.app, lifespan="off") as url:
        monkeypatch.setenv("FLEET_HOME", str(tmp_path / "cli-home"))
        monkeypatch.setenv("FLEET_DEPLOYER_URL", url)
        monkeypatch.setenv("FLEET_TOKEN", token)
        table = await asyncio.to_thread(
            CliRunner().invoke, cli, ["deployments", "show", "fleet-pool"], env={"COLUMNS": "200"}
        )
        assert table.exit_code == 0, table.output
        assert "fleet-pool shared pool" in table.output
        assert "churn:1" in table.output and "3.0 MB" in table.output
        assert "giant" in table.output and "deploy with a quota" in table.output
        as_json = await asyncio.to_thread(
            CliRunner().invoke, cli, ["deployments", "show", "fleet-pool", "--json"]
        )
        assert as_json.exit_code == 0, as_json.output
        view = printed_json(as_json.output)
        assert view["replicas"][0]["loaded"][0]["key"] == "churn:1"
