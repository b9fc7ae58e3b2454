"""The deployer's REST API on SQLite with an in-memory serving engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet_core.auth import Role
from fleet_core.events import Topic
from fleet_core.serving import POOL_APP
from support.deployer import DeployerHarness, FakeServingControl
from support.registry_double import RegistryDouble


async def test_direct_deploy_places_the_version_in_the_pool_and_routes_all_traffic(
    deployer: DeployerHarness, serving: FakeServingControl
) -> None:
    await deployer.register("churn", 1)
    await deployer.register("churn", 2)
    r = await deployer.client.post("/v1/deployments", json={"model": "churn"}, headers=deployer.auth())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["rollout"]["phase"] == "promoted"
    assert body["rollout"]["version"] == 2  # the latest known
    assert body["route"]["table"] == {
        "model": "churn",
        "revision": 1,
        "arms": [{"version": 2, "weight": 100.0, "mode": "primary", "sticky": False, "deployment": POOL_APP}],
        "batching": None,
    }
    assert body["route"]["versions"][0]["state"] == "ready"
    assert set(serving.apps[POOL_APP].config.models) == {"churn:2"}

    r = await deployer.client.post(
        "/v1/deployments", json={"model": "churn", "version": 1}, headers=deployer.auth()
    )
    assert r.json()["route"]["table"]["revision"] == 2
    assert [a["version"] for a in r.json()["route"]["table"]["arms"]] == [1]
    assert set(serving.apps[POOL_APP].config.models) == {"churn:1", "churn:2"}

    updates = await deployer.published()
    assert [(e.data.version, e.data.phase, e.data.routes.revision) for e in updates] == [
        (2, "promoted", 1),
        (1, "promoted", 2),
    ]
    listing = (await deployer.client.get("/v1/deployments", headers=deployer.auth())).json()["items"]
    assert [(d["version"], d["traffic_weight"], d["state"], d["placement"]["kind"]) for d in listing] == [
        (1, 100.0, "ready", "pool"),
        (2, 0.0, "ready", "pool"),
    ]


async def test_a_quota_gets_a_dedicated_deployment_with_the_ray_view(
    deployer: DeployerHarness, serving: FakeServingControl
) -> None:
    await deployer.register("big", 1, quota={"num_cpus": 2, "min_replicas": 1, "max_replicas": 3})
    r = await deployer.client.post("/v1/deployments", json={"model": "big"}, headers=deployer.auth())
    assert r.status_code == 201, r.text
    assert "fleet-big-v1" in serving.apps
    view = (await deployer.client.get("/v1/deployments/big", headers=deployer.auth())).json()
    assert view["deployments"][0]["placement"] == {
        "kind": "dedicated",
        "app": "fleet-big-v1",
        "deployment": "DedicatedModel",
    }
    assert view["deployments"][0]["replicas"] == 1
    app = view["deployments"][0]["ray"]
    assert (app["status"], app["min_replicas"], app["max_replicas"]) == ("RUNNING", 1, 3)
    assert app["actor_resources"] == {"CPU": 2.0}


async def test_rollback_routes_to_the_previous_stable_version_and_publishes_the_table(
    deployer: DeployerHarness,
) -> None:
    for v in (1, 2):
        await deployer.register("churn", v, deploy_policy="direct")
    r = await deployer.client.post(
        "/v1/models/churn/rollback", json={"reason": "errors"}, headers=deployer.auth()
    )
    assert r.status_code == 201, r.text
    assert (r.json()["phase"], r.json()["version"]) == ("rolled_back", 1)
    assert "errors" in r.json()["reason"]
    route = (await deployer.client.get("/v1/routes/churn", headers=deployer.auth())).json()
    assert route["table"]["revision"] == 3
    assert [(a["version"], a["weight"]) for a in route["table"]["arms"]] == [(1, 100.0)]
    last = (await deployer.published())[-1]
    assert (last.data.phase, last.data.routes.revision, last.data.routes.arms[0].version) == (
        "rolled_back",
        3,
        1,
    )

    again = await deployer.client.post("/v1/models/churn/rollback", headers=deployer.auth())
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")


async def test_explicit_split_with_shadow_and_validation_errors_naming_the_field(
    deployer: DeployerHarness,
) -> None:
    for v in (1, 2, 3):
        await deployer.register("churn", v)
        await deployer.client.post(
            "/v1/deployments", json={"model": "churn", "version": v}, headers=deployer.auth()
        )
    url, auth = "/v1/routes/churn", deployer.auth(Role.DEPLOYER, ["fraud"])

    bad_sum = await deployer.client.put(url, json={"arms": [{"version": 1, "weight": 60}]}, headers=auth)
    assert bad_sum.status_code == 422
    assert bad_sum.json()["field"] == "arms.weight"
    unknown = await deployer.client.put(url, json={"arms": [{"version": 7, "weight": 100}]}, headers=auth)
    assert (unknown.status_code, unknown.json()["field"]) == (422, "arms[0].version")
    out_of_range = await deployer.client.put(
        url, json={"arms": [{"version": 1, "weight": 120}]}, headers=auth
    )
    assert (out_of_range.status_code, out_of_range.json()["field"]) == (422, "arms.0.weight")

    split = {
        "arms": [
            {"version": 1, "weight": 90, "sticky": True},
            {"version": 2, "weight": 10, "sticky": True},
            {"version": 3, "mode": "shadow"},
        ],
        "expected_revision": 3,
    }
    r = await deployer.client.put(url, json=split, headers=auth)
    assert r.status_code == 200, r.text
    table = r.json()["table"]
    assert table["revision"] == 4
    assert [(a["version"], a["weight"], a["mode"], a["sticky"]) for a in table["arms"]] == [
        (1, 90.0, "primary", True),
        (2, 10.0, "primary", True),
        (3, 0.0, "shadow", False),
    ]
    stale = await deployer.client.put(url, json=split, headers=auth)
    assert (stale.status_code, stale.json()["field"]) == (409, "expected_revision")

    # A version that carries traffic cannot be retired; one routed away from can.
    busy = await deployer.client.delete("/v1/deployments/churn/3", headers=auth)
    assert busy.status_code == 409 and "shadow" in busy.json()["detail"]
    await deployer.client.put(url, json={"arms": [{"version": 1, "weight": 100}]}, headers=auth)
    assert (await deployer.client.delete("/v1/deployments/churn/3", headers=auth)).status_code == 204
    left = (await deployer.client.get("/v1/deployments/churn", headers=auth)).json()["deployments"]
    assert [d["version"] for d in left] == [1, 2]


async def test_a_failed_ray_deploy_is_recorded_and_leaves_the_routes_alone(
    deployer: DeployerHarness, serving: FakeServingControl
) -> None:
    await deployer.register("churn", 1, deploy_policy="direct")
    await deployer.register("churn", 2, quota={"num_cpus": 1})
    serving.fail_next = "no node has 1 CPU free"
    r = await deployer.client.post(
        "/v1/deployments", json={"model": "churn", "version": 2}, headers=deployer.auth()
    )
    assert r.status_code == 502
    assert "no node has 1 CPU free" in r.json()["detail"]
    route = (await deployer.client.get("/v1/routes/churn", headers=deployer.auth())).json()
    assert [a["version"] for a in route["table"]["arms"]] == [1]
    states = {
        d["version"]: d["state"]
        for d in (await deployer.client.get("/v1/deployments", headers=deployer.auth())).json()["items"]
    }
    assert states == {1: "ready", 2: "failed"}


async def test_model_registered_is_applied_once_per_event_id(
    deployer: DeployerHarness, registry: RegistryDouble
) -> None:
    from fleet_core.events import make_event
    from support.deployer import registered

    event = make_event(Topic.MODEL_REGISTERED, registered("churn", 1, deploy_policy="direct"), source="/t")
    registry.add(event.data)
    await deployer.controller.on_model_registered(event.id, event.data)
    await deployer.controller.on_model_registered(event.id, event.data)
    assert len(await deployer.published()) == 1


async def test_auth_errors(deployer: DeployerHarness) -> None:
    await deployer.register("churn", 1, deploy_policy="direct")
    c = deployer.client
    assert (await c.get("/v1/routes")).status_code == 401
    assert (await c.get("/v1/routes", headers={"Authorization": "Bearer nope"})).status_code == 401

    viewer = deployer.auth(Role.VIEWER, ["fraud"])
    assert (await c.get("/v1/routes/churn", headers=viewer)).status_code == 200
    denied = await c.post("/v1/models/churn/rollback", headers=viewer)
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith("application/problem+json")
    scientist = deployer.auth(Role.SCIENTIST, ["fraud"])
    assert (await c.post("/v1/deployments", json={"model": "churn"}, headers=scientist)).status_code == 403

    other_team = deployer.auth(Role.DEPLOYER, ["ads"])
    assert (await c.get("/v1/routes/churn", headers=other_team)).status_code == 403
    assert (await c.get("/v1/routes", headers=other_team)).json()["models"] == []
    assert (await c.get("/v1/deployments", headers=other_team)).json()["items"] == []
    assert [m["model"] for m in (await c.get("/v1/routes", headers=viewer)).json()["models"]] == ["churn"]

    missing = await c.get("/v1/routes/nope", headers=deployer.auth())
    assert (missing.status_code, missing.json()["field"]) == (404, "model")
    assert (await c.get("/v1/rollouts/nope", headers=deployer.auth())).status_code == 404
    no_version = await c.post(
        "/v1/deployments", json={"model": "churn", "version": 9}, headers=deployer.auth()
    )
    assert no_version.status_code in (404, 503)  # the registry fallback is not running here


async def test_a_version_never_announced_is_looked_up_in_the_registry(
    deployer: DeployerHarness, tmp_path: Path
) -> None:
    from fleet_deployer.registry_client import RegistryClient
    from support.registry import running_registry, upload_version

    (tmp_path / "registry").mkdir()
    async with running_registry(tmp_path / "registry") as registry:
        await registry.client.post(
            "/v1/models", json={"name": "late", "team": "fraud"}, headers=registry.auth()
        )
        r = await upload_version(registry, "late", registry.auth())
        assert r.status_code == 201, r.text
        deployer.controller.registry = RegistryClient(
            "http://registry", deployer.tokens, client=registry.client
        )
        created = await deployer.client.post(
            "/v1/deployments", json={"model": "late"}, headers=deployer.auth()
        )
        assert created.status_code == 201, created.text
        assert created.json()["route"]["versions"][0]["spec"]["sha256"] == r.json()["sha256"]
        missing = await deployer.client.post(
            "/v1/deployments", json={"model": "late", "version": 5}, headers=deployer.auth()
        )
        assert (missing.status_code, missing.json()["field"]) == (404, "version")


async def test_an_explicit_table_deploys_known_versions_first_and_changes_nothing_if_that_fails(
    deployer: DeployerHarness, serving: FakeServingControl
) -> None:
    await deployer.register("churn", 1, deploy_policy="direct")
    await deployer.register("churn", 2, quota={"num_cpus": 1})
    await deployer.register("churn", 3)
    url = "/v1/routes/churn"
    serving.fail_next = "out of memory"
    refused = await deployer.client.put(
        url,
        json={"arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]},
        headers=deployer.auth(),
    )
    assert (refused.status_code, refused.json()["field"]) == (502, "arms")
    assert "out of memory" in refused.json()["detail"]
    assert (await deployer.client.get(url, headers=deployer.auth())).json()["table"]["revision"] == 1

    split = {
        "arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}, {"version": 3, "mode": "shadow"}]
    }
    r = await deployer.client.put(url, json=split, headers=deployer.auth())
    assert r.status_code == 200, r.text
    assert {v["spec"]["version"]: v["state"] for v in r.json()["versions"]} == {
        1: "ready",
        2: "ready",
        3: "ready",
    }
    assert "fleet-churn-v2" in serving.apps
    assert set(serving.apps["fleet-pool"].config.models) == {"churn:1", "churn:3"}


async def test_undeploy_empties_the_routes_retires_every_version_and_rollback_restores_it(
    deployer: DeployerHarness, serving: FakeServingControl
) -> None:
    await deployer.register("churn", 1)
    await deployer.register("churn", 2, quota={"num_cpus": 1})
    auth = deployer.auth(Role.DEPLOYER, ["fraud"])
    for v in (1, 2):
        r = await deployer.client.post("/v1/deployments", json={"model": "churn", "version": v}, headers=auth)
        assert r.status_code == 201, r.text
    assert "fleet-churn-v2" in serving.apps and "churn:1" in serving.apps[POOL_APP].config.models

    r = await deployer.client.delete("/v1/deployments/churn", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["table"] == {"model": "churn", "revision": 3, "arms": [], "batching": None}
    assert r.json()["versions"] == []
    assert "fleet-churn-v2" not in serving.apps
    assert serving.apps[POOL_APP].config.models == {}
    listing = (await deployer.client.get("/v1/deployments?include_retired=true", headers=auth)).json()
    assert [(d["version"], d["state"]) for d in listing["items"]] == [(1, "retired"), (2, "retired")]
    last = (await deployer.published())[-1]
    assert (last.data.phase, last.data.version, last.data.routes.arms) == ("aborted", 2, [])
    rollouts = (await deployer.client.get("/v1/rollouts?model=churn", headers=auth)).json()["items"]
    assert rollouts[0]["action"] == "undeploy" and "v2 100%" in rollouts[0]["reason"]

    # Again: nothing left to undeploy, nothing changes.
    again = await deployer.client.delete("/v1/deployments/churn", headers=auth)
    assert (again.status_code, again.json()["table"]["revision"]) == (200, 3)
    assert len(await deployer.published()) == 3

    back = await deployer.client.post("/v1/models/churn/rollback", headers=auth)
    assert (back.status_code, back.json()["version"]) == (201, 2), back.text
    assert "fleet-churn-v2" in serving.apps

    # Role and team: a scientist of the team and a deployer of another are refused; unknown is 404.
    scientist = await deployer.client.delete(
        "/v1/deployments/churn", headers=deployer.auth(Role.SCIENTIST, ["fraud"])
    )
    other = await deployer.client.delete(
        "/v1/deployments/churn", headers=deployer.auth(Role.DEPLOYER, ["ads"])
    )
    assert (scientist.status_code, other.status_code) == (403, 403)
    ghost = await deployer.client.delete("/v1/deployments/ghost", headers=auth)
    assert (ghost.status_code, ghost.json()["field"]) == (404, "model")


async def test_a_version_recorded_by_its_event_while_the_api_records_it_too_is_no_error(
    deployer: DeployerHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``model.registered`` and ``POST /v1/deployments`` (which looks an unknown version up in the
    registry) may record the same version at once; the second writer used to fail with a unique-
    constraint error (a 500 to the caller, CI 2026-12-03). Here the second writer's view is the
    moment before the first one's insert: it does not see the row, and its insert must not fail."""
    await deployer.register("churn", 1)
    store = deployer.controller.store
    async with store.transaction() as s:
        known = await store.known(s, "churn", 1)
    assert known is not None

    async def not_yet(*_: object) -> None:
        return None

    monkeypatch.setattr(store, "known", not_yet)
    async with store.transaction() as s:
        assert await store.add_known(s, known) is False
