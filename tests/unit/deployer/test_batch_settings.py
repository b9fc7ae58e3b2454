"""Per-model batch settings on the deployer: set on the route table, announced, kept by later tables,
checked like every other write."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleet_core.auth import Role
from fleet_core.events import ArmMetrics, RolloutAnalysis
from fleet_sdk.cli import app as cli
from support.deployer import DeployerHarness
from support.http import serving as listening


async def route(d: DeployerHarness) -> dict:
    r = await d.client.get("/v1/routes/churn", headers=d.auth())
    assert r.status_code == 200, r.text
    return r.json()["table"]


async def test_batch_settings_ride_on_a_new_table_revision_and_are_announced(
    deployer: DeployerHarness,
) -> None:
    await deployer.register("churn", 1, deploy_policy="direct")
    before = await route(deployer)
    assert before["batching"] is None

    r = await deployer.client.put(
        "/v1/routes/churn/batching",
        json={"max_rows": 64, "max_delay_ms": 2},
        headers=deployer.auth(Role.DEPLOYER, ["fraud"]),
    )
    assert r.status_code == 200, r.text
    table = r.json()["table"]
    assert table["revision"] == before["revision"] + 1
    assert table["arms"] == before["arms"], "only the settings change, not the traffic"
    assert table["batching"] == {"max_rows": 64, "max_delay_ms": 2.0, "max_inflight": None}
    announced = (await deployer.published())[-1].data
    assert announced.routes.revision == table["revision"]
    assert announced.routes.batching is not None and announced.routes.batching.max_rows == 64
    assert announced.phase == "promoted", "the model's latest rollout, phase unchanged"

    # A deploy afterwards builds its table from the current one: the settings stay; so does a
    # rollback, which looks past the settings-only revision to the previous version.
    await deployer.register("churn", 2, deploy_policy="direct")
    after = await route(deployer)
    assert [a["version"] for a in after["arms"]] == [2]
    assert after["batching"]["max_rows"] == 64
    r = await deployer.client.post("/v1/models/churn/rollback", headers=deployer.auth())
    assert r.status_code == 201, r.text
    back = await route(deployer)
    assert [a["version"] for a in back["arms"]] == [1]
    assert back["batching"]["max_rows"] == 64

    r = await deployer.client.delete("/v1/routes/churn/batching", headers=deployer.auth())
    assert r.status_code == 200, r.text
    assert r.json()["table"]["batching"] is None
    assert (await route(deployer))["batching"] is None


async def test_a_canary_keeps_the_settings_through_its_steps(deployer: DeployerHarness) -> None:
    await deployer.register("churn", 1, deploy_policy="direct")
    await deployer.register("churn", 2, example_input=[{"x": 1.0}])
    r = await deployer.client.post(
        "/v1/rollouts",
        json={
            "model": "churn",
            "version": 2,
            "strategy": "canary",
            "steps": [10, 100],
            "step_interval_s": 0.05,
        },
        headers=deployer.auth(),
    )
    assert r.status_code == 201, r.text
    rollout = r.json()
    r = await deployer.client.put("/v1/routes/churn/batching", json={"max_rows": 1}, headers=deployer.auth())
    assert r.status_code == 200, r.text
    announced = (await deployer.published())[-1].data
    assert (announced.rollout_id, announced.phase, announced.step) == (rollout["id"], "progressing", 10)

    await asyncio.sleep(0.1)
    await deployer.controller.on_rollout_analysis(
        RolloutAnalysis(
            rollout_id=rollout["id"],
            model="churn",
            step=10,
            candidate_version=2,
            baseline_version=1,
            verdict="pass",
            reason="numbers",
            candidate=ArmMetrics(requests=100, error_rate=0.0),
            baseline=ArmMetrics(requests=900, error_rate=0.0),
        )
    )
    done = (await deployer.client.get(f"/v1/rollouts/{rollout['id']}", headers=deployer.auth())).json()
    assert done["phase"] == "promoted"
    table = await route(deployer)
    assert [(a["version"], a["weight"]) for a in table["arms"]] == [(2, 100)]
    assert table["batching"]["max_rows"] == 1, "batching stays off for the promoted version"


async def test_bad_settings_are_refused_naming_the_field_and_change_nothing(
    deployer: DeployerHarness,
) -> None:
    await deployer.register("churn", 1, deploy_policy="direct")
    before = await route(deployer)
    for body, field in (
        ({"max_rows": 0}, "max_rows"),
        ({"max_delay_ms": -1}, "max_delay_ms"),
        ({"max_inflight": 1000}, "max_inflight"),
        ({"max_batch": 8}, "max_batch"),
    ):
        r = await deployer.client.put("/v1/routes/churn/batching", json=body, headers=deployer.auth())
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in r.text, (field, r.text)
    r = await deployer.client.put(
        "/v1/routes/churn/batching",
        json={"max_rows": 8, "expected_revision": before["revision"] + 5},
        headers=deployer.auth(),
    )
    assert r.status_code == 409 and "expected_revision" in r.text
    assert await route(deployer) == before


async def test_only_the_models_deployers_may_change_its_batching(deployer: DeployerHarness) -> None:
    await deployer.register("churn", 1, deploy_policy="direct")
    for headers in (deployer.auth(Role.VIEWER, ["fraud"]), deployer.auth(Role.DEPLOYER, ["growth"])):
        r = await deployer.client.put("/v1/routes/churn/batching", json={"max_rows": 4}, headers=headers)
        assert r.status_code == 403, r.text
        r = await deployer.client.delete("/v1/routes/churn/batching", headers=headers)
        assert r.status_code == 403, r.text
    r = await deployer.client.put("/v1/routes/nope/batching", json={"max_rows": 4}, headers=deployer.auth())
    assert r.status_code == 404
    assert (await route(deployer))["batching"] is None


async def test_fleet_routes_batching_sets_shows_and_resets(
    deployer: DeployerHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await deployer.register("churn", 1, deploy_policy="direct")
    token = deployer.auth(Role.DEPLOYER, ["fraud"])["Authorization"].removeprefix("Bearer ")
    async with listening(deployer.app, lifespan="off") as url:
        monkeypatch.setenv("FLEET_HOME", str(tmp_path / "cli-home"))
        monkeypatch.setenv("FLEET_DEPLOYER_URL", url)
        monkeypatch.setenv("FLEET_GATEWAY_URL", "http://127.0.0.1:9")  # no gateway: do not wait for it
        monkeypatch.setenv("FLEET_TOKEN", token)

        async def fleet(*args: str) -> str:
            result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env={"COLUMNS": "200"})
            assert result.exit_code == 0, result.output
            return result.output

        out = await fleet(
            "routes", "batching", "churn", "--max-rows", "16", "--max-delay-ms", "1.5", "--wait-s", "0"
        )
        assert "batching set" in out and "max_rows=16" in out and "max_delay_ms=1.5" in out
        assert (await route(deployer))["batching"]["max_rows"] == 16
        assert "batching: max_rows=16, max_delay_ms=1.5" in await fleet("routes", "show", "churn")
        await fleet("routes", "batching", "churn", "--off", "--wait-s", "0")
        assert "batching: off" in await fleet("routes", "show", "churn")
        await fleet("routes", "batching", "churn", "--reset", "--wait-s", "0")
        assert "batching: the gateway's defaults" in await fleet("routes", "show", "churn")

        bad = await asyncio.to_thread(
            CliRunner().invoke, cli, ["routes", "batching", "churn", "--max-rows", "0"]
        )
        assert bad.exit_code != 0 and "max_rows" in f"{bad.output}{bad.exception}", bad.output
        none = await asyncio.to_thread(CliRunner().invoke, cli, ["routes", "batching", "churn"])
        assert none.exit_code == 2 and "--max-rows" in none.output
