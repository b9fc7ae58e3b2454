"""A python-flavor version (publisher code) never shares a process with other teams' models: it
always gets its own deployment, never the shared pool, however it is deployed."""

from __future__ import annotations

from fleet_core.serving import POOL_APP
from support.deployer import DeployerHarness, FakeServingControl


async def test_a_python_version_without_a_quota_gets_its_own_deployment(
    deployer: DeployerHarness, serving: FakeServingControl
) -> None:
    await deployer.register("churn", 1, deploy_policy="direct")
    await deployer.register("rules", 1, team="ml", flavor="python", deploy_policy="direct")
    assert set(serving.apps[POOL_APP].config.models) == {"churn:1"}
    assert "fleet-rules-v1" in serving.apps
    view = (await deployer.client.get("/v1/deployments/rules", headers=deployer.auth())).json()
    [dep] = view["deployments"]
    assert dep["placement"]["kind"] == "dedicated" and dep["quota"] is not None


async def test_a_python_version_is_never_put_in_the_pool_by_a_deploy_or_a_route_table(
    deployer: DeployerHarness, serving: FakeServingControl
) -> None:
    await deployer.register("rules", 1, team="ml", flavor="python")
    await deployer.register("rules", 2, team="ml", flavor="python")
    r = await deployer.client.post(
        "/v1/deployments", json={"model": "rules", "version": 1}, headers=deployer.auth()
    )
    assert r.status_code == 201, r.text
    split = {"arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]}
    r = await deployer.client.put("/v1/routes/rules", json=split, headers=deployer.auth())
    assert r.status_code == 200, r.text
    assert {a["deployment"] for a in r.json()["table"]["arms"]} == {"fleet-rules-v1", "fleet-rules-v2"}
    assert POOL_APP not in serving.apps or not any(
        k.startswith("rules:") for k in serving.apps[POOL_APP].config.models
    )
