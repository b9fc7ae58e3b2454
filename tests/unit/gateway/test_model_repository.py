"""The OIP model repository extension against a real deployer app over loopback HTTP: load is a
direct deploy, unload an undeploy, the index the caller's teams' deployments; the deployer's
role-and-team checks decide, with the caller's own token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from fleet_core.auth import Role
from support.gateway import running_gateway
from support.http import serving
from support.repository import RepositoryStack, gateway_with_deployer

ROW = {"x": 1.0}


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[RepositoryStack]:
    async with gateway_with_deployer(tmp_path) as s:
        for version in (1, 2):
            await s.deployer.register("churn", version)  # team fraud
        await s.deployer.register("ads-ctr", 1, team="ads")
        yield s


async def test_load_deploys_the_latest_version_and_this_gateway_serves_it_at_once(
    stack: RepositoryStack,
) -> None:
    gw = stack.gateway
    r = await gw.client.post("/v2/repository/models/churn/load", headers=gw.auth(Role.DEPLOYER, ["fraud"]))
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "churn", "version": "2", "state": "READY"}
    # The route book learned the deployer's answer before the response: no look-up needed.
    table = gw.app.state.routes.table("churn")
    assert table is not None and [(a.version, a.weight) for a in table.arms] == [(2, 100.0)]
    assert "churn:2" in stack.ray.apps["fleet-pool"].config.models
    served = await gw.client.post(
        "/v2/models/churn/infer", json={"inputs": ROW}, headers=gw.auth(teams=["fraud"])
    )
    assert (served.status_code, served.headers["x-fleet-model-version"]) == (200, "2")

    index = await gw.client.post("/v2/repository/index", headers=gw.auth(teams=["fraud"]))
    assert index.json() == [{"name": "churn", "version": "2", "state": "READY", "reason": ""}]

    r = await gw.client.post(
        "/v2/repository/models/churn/unload",
        json={"parameters": {"unload_dependents": False}},
        headers=gw.auth(Role.DEPLOYER, ["fraud"]),
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "churn", "version": "", "state": "UNAVAILABLE"}
    assert gw.app.state.routes.table("churn").arms == []
    assert stack.ray.apps["fleet-pool"].config.models == {}
    gone = await gw.client.post(
        "/v2/models/churn/infer", json={"inputs": ROW}, headers=gw.auth(teams=["fraud"])
    )
    assert gone.status_code == 404
    ready = (await gw.client.get("/v2/models/churn/ready", headers=gw.auth(teams=["fraud"]))).status_code
    assert ready == 503

    everything = await gw.client.post("/v2/repository/index", json={}, headers=gw.auth(teams=["fraud"]))
    assert everything.json() == [
        {"name": "churn", "version": "2", "state": "UNAVAILABLE", "reason": "unloaded"}
    ]
    only_ready = await gw.client.post(
        "/v2/repository/index", json={"ready": True}, headers=gw.auth(teams=["fraud"])
    )
    assert only_ready.json() == []

    # Loading again brings it back.
    again = await gw.client.post(
        "/v2/repository/models/churn/load", headers=gw.auth(Role.DEPLOYER, ["fraud"])
    )
    assert again.json()["state"] == "READY"
    served = await gw.client.post(
        "/v2/models/churn/infer", json={"inputs": ROW}, headers=gw.auth(teams=["fraud"])
    )
    assert served.status_code == 200


async def test_the_deployers_role_and_team_checks_decide_with_its_own_detail(stack: RepositoryStack) -> None:
    gw, deployer = stack.gateway, stack.deployer
    load, unload = "/v2/repository/models/churn/load", "/v2/repository/models/churn/unload"
    assert (await gw.client.post(load)).status_code == 401

    viewer = gw.auth(Role.VIEWER, ["fraud"], subject="vera")
    refused = await gw.client.post(load, headers=viewer)
    direct = await deployer.client.post("/v1/deployments", json={"model": "churn"}, headers=viewer)
    assert (refused.status_code, direct.status_code) == (403, 403)
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["detail"] == direct.json()["detail"]
    assert refused.json()["type"] == direct.json()["type"]

    scientist = await gw.client.post(load, headers=gw.auth(Role.SCIENTIST, ["fraud"]))
    other_team = await gw.client.post(load, headers=gw.auth(Role.DEPLOYER, ["ads"]))
    assert (scientist.status_code, other_team.status_code) == (403, 403)
    assert stack.ray.apps.get("fleet-pool") is None or stack.ray.apps["fleet-pool"].config.models == {}

    assert (await gw.client.post(load, headers=gw.auth(Role.DEPLOYER, ["fraud"]))).status_code == 200
    assert (await gw.client.post(unload, headers=gw.auth(Role.DEPLOYER, ["ads"]))).status_code == 403
    assert (await gw.client.post(unload, headers=gw.auth(Role.VIEWER, ["fraud"]))).status_code == 403
    assert "churn:2" in stack.ray.apps["fleet-pool"].config.models
    assert (await gw.client.post(unload, headers=gw.auth(Role.ADMIN, ["*"]))).status_code == 200


async def test_the_index_lists_only_the_callers_teams_page_after_page(
    stack: RepositoryStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = stack.gateway
    for i in range(4):
        await stack.deployer.register(f"fraud-{i}", 1)
    admin = gw.auth(Role.ADMIN, ["*"])
    for model in ["churn", "ads-ctr"] + [f"fraud-{i}" for i in range(4)]:
        assert (await gw.client.post(f"/v2/repository/models/{model}/load", headers=admin)).status_code == 200
    monkeypatch.setattr("fleet_gateway.deployer_client.PAGE", 2)  # six deployments: three pages

    fraud = await gw.client.post("/v2/repository/index", headers=gw.auth(Role.VIEWER, ["fraud"]))
    assert fraud.status_code == 200, fraud.text
    assert [m["name"] for m in fraud.json()] == ["churn"] + [f"fraud-{i}" for i in range(4)]
    ads = await gw.client.post("/v2/repository/index", headers=gw.auth(Role.VIEWER, ["ads"]))
    assert ads.json() == [{"name": "ads-ctr", "version": "1", "state": "READY", "reason": ""}]
    everyone = await gw.client.post("/v2/repository/index", json={"ready": True}, headers=admin)
    assert len(everyone.json()) == 6
    nobody = await gw.client.post("/v2/repository/index", headers=gw.auth(Role.DEPLOYER, ["growth"]))
    assert (nobody.status_code, nobody.json()) == (200, [])


async def test_a_failed_deploy_shows_its_error_in_the_index(stack: RepositoryStack) -> None:
    gw = stack.gateway
    stack.ray.fail_next = "no node has room for the pool"
    r = await gw.client.post("/v2/repository/models/churn/load", headers=gw.auth(Role.DEPLOYER, ["fraud"]))
    assert r.status_code == 502
    assert "no node has room for the pool" in r.json()["detail"]
    index = (await gw.client.post("/v2/repository/index", headers=gw.auth(teams=["fraud"]))).json()
    assert [(m["name"], m["state"]) for m in index] == [("churn", "UNAVAILABLE")]
    assert "no node has room for the pool" in index[0]["reason"]


async def test_unknown_models_are_404_naming_the_model(stack: RepositoryStack) -> None:
    gw = stack.gateway
    auth = gw.auth(Role.ADMIN, ["*"])
    load = await gw.client.post("/v2/repository/models/ghost/load", headers=auth)
    assert load.status_code == 404, load.text
    assert "'ghost'" in load.json()["detail"] and load.json()["field"] == "model"
    unload = await gw.client.post("/v2/repository/models/ghost/unload", headers=auth)
    assert (unload.status_code, unload.json()["field"]) == (404, "model")
    assert "'ghost'" in unload.json()["detail"]


async def test_uploads_and_configurations_are_refused_before_the_deployer_is_asked(
    stack: RepositoryStack,
) -> None:
    gw = stack.gateway
    auth = gw.auth(Role.DEPLOYER, ["fraud"])
    url = "/v2/repository/models/churn/load"
    upload = await gw.client.post(url, json={"parameters": {"file:1/model.onnx": "AAAA"}}, headers=auth)
    assert (upload.status_code, upload.json()["field"]) == (422, "parameters.file:1/model.onnx")
    assert "registered through the registry" in upload.json()["detail"]
    config = await gw.client.post(url, json={"parameters": {"config": '{"backend": "onnx"}'}}, headers=auth)
    assert (config.status_code, config.json()["field"]) == (422, "parameters.config")
    other = await gw.client.post(url, json={"parameters": {"priority": 1}}, headers=auth)
    assert (other.status_code, other.json()["field"]) == (422, "parameters.priority")
    bad_ready = await gw.client.post("/v2/repository/index", json={"ready": "yes"}, headers=auth)
    assert (bad_ready.status_code, bad_ready.json()["field"]) == (422, "ready")
    assert (await stack.deployer.published()) == []  # nothing was deployed


async def test_a_deployer_that_cannot_be_reached_is_503() -> None:
    async with running_gateway(None, deployer_url="http://127.0.0.1:1") as gw:
        r = await gw.client.post("/v2/repository/index", headers=gw.auth())
        assert r.status_code == 503
        assert "cannot be reached" in r.json()["detail"]
        assert r.headers["retry-after"] == "5"


async def test_server_metadata_declares_the_extension(stack: RepositoryStack) -> None:
    body = (await stack.gateway.client.get("/v2")).json()
    assert "model_repository" in body["extensions"]


async def test_tritonclient_http_lists_loads_and_unloads_over_loopback(stack: RepositoryStack) -> None:
    # tritonclient sends the index request with an empty body and JSON bodies without a JSON content
    # type; its calls are blocking, so they run in a thread while this loop serves the gateway.
    gw = stack.gateway
    deployer, viewer = gw.auth(Role.DEPLOYER, ["fraud"]), gw.auth(Role.VIEWER, ["fraud"])

    def calls(url: str) -> None:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        try:
            assert "model_repository" in client.get_server_metadata()["extensions"]
            assert client.get_model_repository_index(headers=viewer) == []
            with pytest.raises(InferenceServerException) as refused:
                client.load_model("churn", headers=viewer)
            assert refused.value.status() == "403"
            client.load_model("churn", headers=deployer)
            assert client.get_model_repository_index(headers=viewer) == [
                {"name": "churn", "version": "2", "state": "READY", "reason": ""}
            ]
            assert client.is_model_ready("churn", headers=viewer)
            client.unload_model("churn", headers=deployer)
            assert not client.is_model_ready("churn", headers=viewer)
            assert client.get_model_repository_index(headers=viewer) == [
                {"name": "churn", "version": "2", "state": "UNAVAILABLE", "reason": "unloaded"}
            ]
        finally:
            client.close()

    async with serving(gw.app, lifespan="off") as url:
        await asyncio.to_thread(calls, url)
