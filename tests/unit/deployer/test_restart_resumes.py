"""A restarted deployer carries on from its database: routes, deployments and rollouts survive,
Ray Serve is reconciled (missing applications re-created, running ones left alone), and a direct
rollout interrupted between its two transactions is finished."""

from __future__ import annotations

from pathlib import Path

from fleet_core.auth import Role
from fleet_core.serving import POOL_APP
from support.deployer import FakeServingControl, running_deployer
from support.registry_double import confirming


async def test_restart_resumes_state_from_the_database_and_reconciles_ray(tmp_path: Path) -> None:
    first = FakeServingControl()
    async with running_deployer(tmp_path, serving=first) as d:
        confirming(d)
        await d.register("churn", 1, deploy_policy="direct")
        await d.register("churn", 2, deploy_policy="direct", quota={"num_cpus": 1})
        await d.client.put(
            "/v1/routes/churn",
            json={"arms": [{"version": 1, "weight": 70}, {"version": 2, "weight": 30}]},
            headers=d.auth(),
        )
        before = (await d.client.get("/v1/routes/churn", headers=d.auth())).json()
        rollouts = (await d.client.get("/v1/rollouts", headers=d.auth())).json()["total"]

    # Ray lost everything while the deployer was down.
    lost = FakeServingControl()
    async with running_deployer(tmp_path, serving=lost) as d:
        confirming(d)
        assert (
            await d.client.get("/v1/routes/churn", headers=d.auth(Role.VIEWER, ["fraud"]))
        ).json() == before
        assert (await d.client.get("/v1/rollouts", headers=d.auth())).json()["total"] == rollouts
        assert set(lost.apps) == {POOL_APP, "fleet-churn-v2"}
        assert set(lost.apps[POOL_APP].config.models) == {"churn:1"}
        # Routing carries on from the same revision.
        r = await d.client.post("/v1/models/churn/rollback", headers=d.auth())
        assert (r.json()["version"], r.json()["phase"]) == (2, "rolled_back")  # the last 100 % one
        assert (await d.client.get("/v1/routes/churn", headers=d.auth())).json()["table"]["revision"] == 4

    # Ray kept running: the pool is reconfigured, the dedicated app is not touched.
    lost.calls.clear()
    async with running_deployer(tmp_path, serving=lost):
        assert ("apply_dedicated", "fleet-churn-v2") not in lost.calls
        assert [c[0] for c in lost.calls] == ["apply_pool"]


async def test_a_direct_rollout_interrupted_before_routing_is_finished_after_a_restart(
    tmp_path: Path,
) -> None:
    serving = FakeServingControl()
    async with running_deployer(tmp_path, serving=serving) as d:
        confirming(d)
        await d.register("churn", 1)
        controller = d.controller
        known = await controller.resolve("churn", 1)
        async with controller.store.transaction() as s:  # the first half of a rollout, then a "crash"
            rollout = await controller._begin(s, known, None, "direct", "direct", "alice", "deploy", None)

    async with running_deployer(tmp_path, serving=serving) as d:
        confirming(d)
        done = (await d.client.get(f"/v1/rollouts/{rollout.id}", headers=d.auth())).json()
        assert done["phase"] == "promoted"
        route = (await d.client.get("/v1/routes/churn", headers=d.auth())).json()
        assert [(a["version"], a["weight"]) for a in route["table"]["arms"]] == [(1, 100.0)]
        assert route["versions"][0]["state"] == "ready"
